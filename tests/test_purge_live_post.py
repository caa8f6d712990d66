"""review/purge.py and the live-post rule (``db.models.LIVE_POST``): an erased post keeps its
status, yet it is no backlog, no unscored post and no scoring lease, and the ``demo`` command does
not count it. (Decisions refusing an erased post: test_decisions.py.)"""

from __future__ import annotations

from db.models import Post
from review import scoring, verdicts
from review.cli import main
from review.metrics.activity import activity
from review.queue import queue_count
from tests.conftest import people
from tests.factories import erase_posts, spam_queue


def test_erased_posts_are_neither_backlog_nor_unscored(desk, monkeypatch, capsys) -> None:
    """Purge keeps the status of a waiting post (queued, unscored): before the fix those posts
    counted as backlog and as waiting for a verdict for ever (metrics.activity, the Activity
    page's and ``score``'s unscored count, ``demo``'s hint). One rule, LIVE_POST, everywhere."""
    p = people(desk)
    queued = spam_queue(desk, 3)
    with desk.sessions() as session, session.begin():
        unscored = []
        for i in range(3):
            post = Post(source="t", external_id=f"u{i}", text=f"unscored {i}")
            session.add(post)
            session.flush()
            unscored.append(post.id)
    erase_posts(desk, [queued[0], unscored[0], unscored[1]])
    with desk.sessions() as session:
        assert verdicts.unscored_count(session) == 1
        assert session.scalars(verdicts.unscored_query()).all() == [unscored[2]]
        assert queue_count(session, p["lea"]) == 2
        today = activity(session, p["lea"]).days[-1]
    assert today.waiting == 3  # two queued and one unscored post left, the erased ones are no backlog
    assert scoring.lease_batch(desk.sessions, "worker-1", 10) == [unscored[2]]
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    capsys.readouterr()
    assert main(["demo"]) == 0  # a desk with posts: the demo is not loaded, the unscored ones are named
    assert "1 posts have no verdict yet" in capsys.readouterr().err
