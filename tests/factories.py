"""Worlds of posts that several test modules build: the metrics' decided posts (``metrics_world``,
with the verdict and decision rows it writes directly), the export's (``export_world``, behind the
``world`` fixture in conftest.py), a review queue (``queued_posts``) and the demo's (``demo_world``);
and for the moderation tests, the cast without passwords (``staff``), queued posts with their
verdicts (``queued_posts_with_verdicts``, ``spam_queue``), claim-and-decide, and readers of a
post's row and claim."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import Media, Post, PostMedia, ReviewEvent, User, Verdict
from review import labels
from review import purge as purging
from review.auth import OPERATOR, Actor
from review.decisions import Label, claim, decide
from review.desk import Desk
from review.ingest import ingest_records
from review.priority import queue_priority
from review.prompts import moderation_prompt
from review.queue import QueueFilter
from review.verdicts import point_at
from tests.conftest import REPO, account

# --------------------------------------------------------------------------------------------
# The metrics' world: verdicts and decisions written directly, labels rebuilt

CATEGORIES = ["none", "fraud_spam", "false_advertising", "hate_harassment", "violence_gore"]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def add_verdict(session, post_id: int, category: str, confidence: float, *, failed: bool = False) -> Verdict:
    """A verdict saying ``category`` with ``confidence`` (or a failed one), flushed."""
    v = Verdict(
        post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1", input_hash=f"h{post_id}",
        parse_status="failed" if failed else "ok", violation=None if failed else category != "none",
        category=None if failed else category, severity=0 if category == "none" else 2,
        confidence=None if failed else confidence, tags=[], parse_notes=[],
    )  # fmt: skip
    session.add(v)
    session.flush()
    return v


def queue_with(session: Session, verdict: Verdict) -> Verdict:
    """Store ``verdict`` and queue its post as scoring leaves it: the post points at the verdict,
    waits in the queue, at the priority the queue's rule gives it."""
    session.add(verdict)
    session.flush()
    point_at(session, verdict)
    session.execute(
        update(Post).where(Post.id == verdict.post_id).values(status="queued", priority=queue_priority(verdict, 0))
    )
    return verdict


def add_decision(session, post_id: int, user_id: int, verdict: Verdict, label: str, at: datetime) -> None:
    """A review event labelling the post ``label`` at ``at``: confirm if the verdict said so, else overturn."""
    action = "confirm" if verdict.parse_status == "ok" and label == (verdict.category or "none") else "overturn"
    session.add(
        ReviewEvent(post_id=post_id, user_id=user_id, action=action, created_at=at, verdict_id=verdict.id,
                    label_violation=label != "none", label_category=label, label_severity=0 if label == "none" else 2)
    )  # fmt: skip


def metrics_world(desk, n: int = 240, seed: int = 3):
    """n decided posts with known labels; returns the reference (human, model, p_violation) lists."""
    rng = random.Random(seed)
    mod = account(desk, "moderator")
    other = account(desk, "moderator", "other")
    third = account(desk, "lead", "third")
    humans, models, p_violation, confidences, correct = [], [], [], [], []
    with desk.sessions() as session, session.begin():
        for i in range(n):
            post = Post(source="weibo" if i % 3 else "douyin", external_id=f"m{i}", text="t", status="decided")
            session.add(post)
            session.flush()
            human = rng.choice(CATEGORIES[:-1])  # violence_gore: predicted sometimes, never the truth
            model = human if rng.random() < 0.7 else rng.choice(CATEGORIES)
            model = "fraud_spam" if model == "false_advertising" else model  # a true category never predicted
            confidence = rng.choice([0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95])  # few values: many ties
            shown = add_verdict(session, post.id, model, confidence)
            at = T0 + timedelta(hours=i)
            if i % 10 == 0:  # three decisions: an early wrong label, a second review, the final one
                add_decision(session, post.id, mod.id, shown, "hate_harassment", at)
                add_decision(session, post.id, other.id, shown, "fraud_spam", at + timedelta(minutes=1))
            if i % 20 == 0:  # a third person on some of them
                add_decision(session, post.id, third.id, shown, rng.choice([human, "none"]), at + timedelta(minutes=1))
            add_decision(session, post.id, mod.id, shown, human, at + timedelta(minutes=2))
            if i % 7 == 0:  # re-scored after the decision: the metric keeps the verdict that was shown
                add_verdict(session, post.id, human, 0.99)
            humans.append(human)
            models.append(model)
            p_violation.append(confidence if model != "none" else 1 - confidence)
            confidences.append(confidence)
            correct.append(human == model)
        # not counted: a reopened post (back in the queue), and a decision on a failed verdict (apart)
        reopened = Post(source="weibo", external_id="reopened", text="t", status="queued")
        failed = Post(source="weibo", external_id="failed", text="t", status="decided")
        session.add_all([reopened, failed])
        session.flush()
        add_decision(session, reopened.id, mod.id, add_verdict(session, reopened.id, "none", 0.9), "fraud_spam", T0)
        add_decision(session, failed.id, mod.id, add_verdict(session, failed.id, "none", 0.0, failed=True), "none", T0)
        labels.rebuild(session)  # events written directly here; decisions.py keeps it as it goes
    return humans, models, p_violation, confidences, correct


# --------------------------------------------------------------------------------------------
# The export's world: ingested with images, scored, decided through the desk

# (text, model's category, moderator's category, image seed); seeds repeat for shared images
EXPORT_POSTS = [
    ("全网最好的面霜，100%有效 联系电话 138-1234-5678", "none", "false_advertising", 1),
    ("转发：全网最好的面霜", "none", "false_advertising", 2),  # a near-duplicate of the first (cluster 7)
    ("兼职刷单，日赚500+ 加微信 wx: meiyan_8888", "fraud_spam", "fraud_spam", 3),  # agreed: not a disagreement
    ("Lose 10 kg in 7 days", "fraud_spam", "false_advertising", 4),
    ("Lose 10 kg in 7 days", "fraud_spam", "false_advertising", 4),  # an exact duplicate of the one above
    ("周一早上的我", "hate_harassment", "none", 5),
    ("海边三连拍", None, "none", 6),  # the model failed: a disagreement by definition
    ("Worst hurricane ever, the whole coast is destroyed", "none", "misinformation", 8),
    ("You are all idiots, get lost", "none", "hate_harassment", 9),
    ("新买的马克杯，颜色很喜欢", "none", "none", 10),
    ("看图 <image> 免费领取 iPhone", "none", "fraud_spam", 1),  # the first post's picture, another caption
]


def _export_png(seed: int) -> Image.Image:
    return Image.new("RGB", (64 + seed, 48), (seed * 40 % 255, 80, 200 - seed * 10))


def export_world(desk: Desk, tmp_path: Path) -> list[int]:
    """EXPORT_POSTS ingested with their images (into ``tmp_path``), scored and decided by a moderator
    (confirmed where the model agreed, overturned where not); the first two are near-duplicates.
    Returns the post ids in EXPORT_POSTS order."""
    records = []
    for i, (text, *_rest, seed) in enumerate(EXPORT_POSTS):
        names = [f"img{seed}.png"] + ([f"img{seed}b.png"] if i == 7 else [])  # post 7 has two images
        for name in names:
            _export_png(seed + (50 if name.endswith("b.png") else 0)).save(tmp_path / name)
        records.append({"external_id": f"e{i}", "source": "weibo", "text": text, "images": names})
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        for i, ((text, said, _, _), post_id) in enumerate(zip(EXPORT_POSTS, ids, strict=True)):
            n_images = 2 if i == 7 else 1
            version = moderation_prompt(text, n_images).version if i % 2 == 0 else "moderation@oldversion1"
            v = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version=version,
                        input_hash=f"x{i}", parse_status="failed" if said is None else "ok",
                        violation=None if said is None else said != "none", category=said,
                        severity=None if said is None else (0 if said == "none" else 2),
                        confidence=None if said is None else 0.8, description=f"picture {i}", ocr_text="",
                        image_text_consistency="consistent", sentiment="neutral", tags=["t"],
                        rationale=f"model rationale {i}", parse_notes=[])  # fmt: skip
            queue_with(session, v)
        media = session.scalars(
            select(PostMedia.media_id).where(PostMedia.post_id.in_([ids[0], ids[1]]))
        ).all()  # the first two posts are near-duplicates of each other
        # as after `python -m review signals`: every image in a cluster, most of them alone
        session.execute(update(Media).values(dup_cluster=Media.id + 1000))
        session.execute(update(Media).where(Media.id.in_(media)).values(dup_cluster=7))
    moderator = account(desk, "moderator")
    for (_, said, human, _), post_id in zip(EXPORT_POSTS, ids, strict=True):
        assert claim(desk.sessions, moderator, post_id) is not None
        if said == human:
            decide(desk.sessions, moderator, post_id, "confirm")
        else:
            label = Label(human != "none", human, 0 if human == "none" else 2)
            decide(desk.sessions, moderator, post_id, "overturn", label=label, note="note" if human == "none" else None)
    return ids


# --------------------------------------------------------------------------------------------
# A review queue: posts with an image and a usable verdict, queued

HOSTILE = "**bold** <script>alert(1)</script> [link](javascript:alert(1)) $x^2$"


def queued_posts(desk: Desk, tmp_path: Path, n: int = 6) -> list[int]:
    """n queued posts with an image and a usable verdict each: post 0 violence_gore (a blurred
    category) with HOSTILE text, the others fraud_spam or no violation."""
    records = []
    for i in range(n):
        Image.new("RGB", (120, 90), (30 * i % 255, 90, 160)).save(tmp_path / f"img{i}.png")
        records.append(
            {"external_id": f"q{i}", "text": HOSTILE if i == 0 else f"post number {i}", "images": [f"img{i}.png"]}
        )
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        for i, post_id in enumerate(ids):
            category = "violence_gore" if i == 0 else ("fraud_spam" if i % 2 else "none")
            verdict = Verdict(
                post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1", input_hash=f"h{i}",
                text_hash=f"t{i}", parse_status="ok", violation=category != "none", category=category,
                severity=0 if category == "none" else 2, confidence=0.9, tags=[], parse_notes=[],
                rationale=f"rationale {i} <b>not html</b>",
            )  # fmt: skip
            queue_with(session, verdict)
    return ids


# --------------------------------------------------------------------------------------------
# The demo's world


def demo_world(desk) -> list[int]:
    """The demo's 40 posts as the demo leaves them (queued, with a baseline-like verdict that
    is right on most), without drawing and reading the images."""
    from db.models import Post, Verdict
    from review.demo import DEMO_SOURCE, INTENDED
    from review.verdicts import point_at

    ids = []
    with desk.sessions() as session, session.begin():
        for n, truth in enumerate(INTENDED, start=1):
            post = Post(source=DEMO_SOURCE, external_id=f"demo-{n:03d}", text=f"demo {n}", status="queued")
            session.add(post)
            session.flush()
            said = truth if n % 5 else "none"
            verdict = Verdict(post_id=post.id, provider="baseline", model_id="baseline-rules", prompt_version="b@1",
                              input_hash=f"d{n}", parse_status="ok", violation=said != "none", category=said,
                              severity=0 if said == "none" else 2, confidence=0.3 + n % 7 / 10, tags=[],
                              parse_notes=[])  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            ids.append(post.id)
    return ids


# --------------------------------------------------------------------------------------------
# Moderation: the cast, queued posts with their verdicts, reading a post's row and claim


SECOND_REVIEWS = QueueFilter(second_review=True)


def staff(desk) -> dict[str, Actor]:
    """An admin, three moderators and a lead (accounts without passwords: argon2 hashing would
    only slow these tests down; authentication has its own tests)."""
    people = {}
    with desk.sessions() as session, session.begin():
        for name, role in (("admin", "admin"), ("ann", "moderator"), ("bob", "moderator"), ("cid", "moderator"),
                           ("lea", "lead")):  # fmt: skip
            user = User(username=name, password_hash=None, role=role, active=True)
            session.add(user)
            session.flush()
            people[name] = Actor(user.id, name, role)
    return people


def queued_posts_with_verdicts(desk, categories: list[str | None], prefix: str = "p") -> list[int]:
    """One queued post per entry, oldest first, each with a current verdict: a violation of that
    category (severity 1–3), "none" (no violation), or None (a failed verdict, priority 100)."""
    ids = []
    with desk.sessions() as session, session.begin():
        for i, category in enumerate(categories):
            failed = category is None
            severity = 0 if category in (None, "none") else 1 + i % 3
            post = Post(source="t", external_id=f"{prefix}{i}", text=f"post {i}", status="queued",
                        priority=100.0 if failed else severity * 0.9)  # fmt: skip
            session.add(post)
            session.flush()
            verdict = Verdict(
                post_id=post.id, provider="transformers", model_id="m", prompt_version="v", input_hash=f"{prefix}i{i}",
                text_hash=f"{prefix}t{i}", parse_status="failed" if failed else "ok",
                violation=None if failed else severity > 0, category=category,
                severity=None if failed else severity, confidence=None if failed else 0.9, tags=[], parse_notes=[],
            )  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            ids.append(post.id)
    return ids


def post_row(desk, post_id: int) -> dict:
    with desk.sessions() as session:
        post = session.get(Post, post_id)
        assert post is not None
        return {
            "status": post.status,
            "first_decider_id": post.first_decider_id,
            "claimed_by_id": post.claimed_by_id,
            "lease_expires_at": post.lease_expires_at,
            "priority": post.priority,
        }


def claim_and_decide(desk, actor: Actor, post_id: int, *args, **kwargs):
    got = claim(desk.sessions, actor, post_id)
    assert got is not None and got.post_id == post_id
    return decide(desk.sessions, actor, post_id, *args, **kwargs)


def page_ids(page) -> set[int]:
    return {row.post_id for row in page.rows}


def event_count(desk) -> int:
    with desk.sessions() as session:
        return session.scalar(select(func.count(ReviewEvent.id))) or 0


def spam_queue(desk, n: int) -> list[int]:
    """n queued posts of equal priority, each with the same usable verdict (fraud_spam, severity 2)."""
    ids = []
    with desk.sessions() as session, session.begin():
        for i in range(n):
            post = Post(source="t", external_id=f"p{i}", text=f"post {i}", status="queued", priority=1.0)
            session.add(post)
            session.flush()
            verdict = Verdict(post_id=post.id, provider="transformers", model_id="m", prompt_version="v",
                              input_hash=f"i{i}", text_hash=f"t{i}", parse_status="ok", violation=True,
                              category="fraud_spam", severity=2, confidence=0.9, tags=[], parse_notes=[])  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            ids.append(post.id)
    return ids


def claim_holder(desk, post_id: int) -> int | None:
    with desk.sessions() as session:
        return session.scalar(select(Post.claimed_by_id).where(Post.id == post_id))


def erase_posts(desk, ids: list[int]) -> None:
    erased = purging.purge(desk.sessions, OPERATOR, desk.settings, ids, reason="the author asked for erasure")
    assert erased.erased == sorted(ids)


def moderator_processes(db_url: str, users: list, attempts: int) -> list[subprocess.Popen]:
    """One tests/decide_worker.py process per user (``attempts`` claims and decisions each, seeded
    by its position), started at once; their stdout is one JSON line."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "decide_worker.py"), db_url, str(u.id), str(attempts), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, u in enumerate(users)
    ]
