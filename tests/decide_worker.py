"""One moderator process for the concurrency test: N attempts to claim the next post and decide
it, some with a lease that runs out before the decision, some deciding a post it never
claimed. Prints one JSON line: the events it was told were written and what was refused.

    python tests/decide_worker.py DATABASE_URL USER_ID ATTEMPTS SEED
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.session import make_engine, make_session_factory  # noqa: E402
from review.auth import active_actor  # noqa: E402
from review.decisions import ClaimLost, claim, decide, new_idempotency_key  # noqa: E402


def main() -> None:
    url, user_id, attempts, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    sessions = make_session_factory(make_engine(url))
    with sessions() as session:
        me = active_actor(session, user_id)  # the account as stored: decisions check its name and role
    assert me is not None, f"no active account {user_id}"
    out = {"decided": [], "claimed": 0, "empty": 0, "refused_expired": 0, "refused_foreign": 0}
    for _ in range(attempts):
        if rng.random() < 0.1:  # a decision without a claim: must be refused
            try:
                decide(sessions, me, rng.randrange(1, 4000), "confirm")
                out["decided"].append(("unclaimed?", None))
            except ClaimLost:
                out["refused_foreign"] += 1
            continue
        short = rng.random() < 0.1
        got = claim(sessions, me, lease=timedelta(milliseconds=30) if short else timedelta(minutes=10))
        if got is None:
            out["empty"] += 1
            continue
        out["claimed"] += 1
        if short:
            time.sleep(0.06)  # the lease runs out; another process may take the post meanwhile
        try:
            event = decide(sessions, me, got.post_id, "confirm", idempotency_key=new_idempotency_key())
            out["decided"].append((got.post_id, event.id))
        except ClaimLost:
            out["refused_expired"] += 1
    print(json.dumps(out))


if __name__ == "__main__":
    main()
