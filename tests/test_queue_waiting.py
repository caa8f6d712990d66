"""review/queue.py, what waits for whom: the filters on second review and escalation per role,
counts per category of the waiting posts, and the members of near-duplicate clusters.
(The listing, claim order and paging: test_queue.py.)"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from db.models import Media, Post, PostMedia
from review.auth import Actor
from review.decisions import claim
from review.queue import QueueFilter, category_counts, cluster_post_ids, queue_count, queue_page
from review.visibility import Viewer
from tests.factories import SECOND_REVIEWS, claim_and_decide, page_ids, queued_posts_with_verdicts, staff


def test_queue_filters_on_second_review_and_escalation(desk) -> None:
    p = staff(desk)
    ann, bob, lea = p["ann"], p["bob"], p["lea"]
    queued, second, escalated, decided, failed = queued_posts_with_verdicts(
        desk, ["fraud_spam", "sexual", "fraud_spam", "none", None]
    )
    claim_and_decide(desk, ann, second, "confirm", share=1.0)
    claim_and_decide(desk, ann, escalated, "escalate", note="needs a lead")
    claim_and_decide(desk, ann, decided, "confirm", share=0.0)
    cases = [
        (bob, QueueFilter(), {queued, second, failed}),
        (bob, SECOND_REVIEWS, {second}),
        (bob, QueueFilter(second_review=False), {queued, failed}),
        (bob, QueueFilter(escalated=True), set()),
        (bob, QueueFilter(escalated=False), {queued, second, failed}),
        (bob, QueueFilter(second_review=True, model_failure=False), {second}),
        (ann, QueueFilter(), {queued, failed}),
        (ann, SECOND_REVIEWS, set()),
        (lea, QueueFilter(), {queued, second, escalated, failed}),
        (lea, QueueFilter(escalated=True), {escalated}),
        (lea, QueueFilter(escalated=False), {queued, second, failed}),
        (lea, QueueFilter(escalated=False, second_review=False), {queued, failed}),
        (lea, QueueFilter(escalated=True, second_review=True), set()),
        (lea, QueueFilter(second_review=True, category="sexual"), {second}),
        (lea, QueueFilter(second_review=True, category="fraud_spam"), set()),
    ]
    with desk.sessions() as session:
        for actor, flt, expected in cases:
            page = queue_page(session, Viewer(actor), flt)
            assert page_ids(page) == expected, (actor.username, flt)
            assert queue_count(session, actor, flt) == len(expected), (actor.username, flt)
        # the escalation comes first for a lead, then the model failure
        assert [r.post_id for r in queue_page(session, Viewer(lea)).rows][:2] == [escalated, failed]
        assert {r.status for r in queue_page(session, Viewer(lea), SECOND_REVIEWS).rows} == {"second_review"}


def test_category_counts_match_the_waiting_posts(desk) -> None:
    p = staff(desk)
    ann, bob, lea = p["ann"], p["bob"], p["lea"]
    categories = ["fraud_spam"] * 4 + ["sexual"] * 3 + ["none"] * 2 + [None] * 2 + ["illegal_goods"]
    ids = queued_posts_with_verdicts(desk, categories)
    with desk.sessions() as session:
        assert category_counts(session, bob) == {"fraud_spam": 4, "sexual": 3, "none": 2, None: 2, "illegal_goods": 1}
    claim_and_decide(desk, ann, ids[0], "confirm", share=0.0)  # decided: no longer waiting
    claim_and_decide(desk, ann, ids[4], "escalate", note="needs a lead")  # waits for leads only
    claim_and_decide(desk, ann, ids[5], "confirm", share=1.0)  # second review: not for ann
    assert claim(desk.sessions, bob, ids[1]) is not None  # claimed posts still count

    def manual(actor: Actor, violation: bool | None = None) -> dict[str | None, int]:
        statuses = {"queued", "second_review"} | ({"escalated"} if actor.role == "lead" else set())
        with desk.sessions() as session:
            rows = session.execute(
                select(Post.status, Post.first_decider_id, Post.verdict_category, Post.verdict_violation)
            ).all()
        return dict(
            Counter(
                r.verdict_category
                for r in rows
                if r.status in statuses
                and not (r.status == "second_review" and r.first_decider_id == actor.id)
                and (violation is None or r.verdict_violation is violation)
            )
        )

    with desk.sessions() as session:
        for actor in (ann, bob, lea):
            counts = category_counts(session, actor)
            assert counts == manual(actor), actor.username
            assert list(counts.values()) == sorted(counts.values(), reverse=True)  # largest first
            assert sum(counts.values()) == queue_count(session, actor)
            assert category_counts(session, actor, QueueFilter(violation=True)) == manual(actor, violation=True)
        assert category_counts(session, bob) == {"fraud_spam": 3, "sexual": 2, "none": 2, None: 2, "illegal_goods": 1}
        assert category_counts(session, ann)["sexual"] == 1
        assert category_counts(session, lea)["sexual"] == 3
        assert category_counts(session, bob, SECOND_REVIEWS) == {"sexual": 1}


def test_cluster_post_ids_follow_shared_duplicate_clusters(desk) -> None:
    with desk.sessions() as session, session.begin():
        media = []
        for i in range(7):
            m = Media(sha256=f"{i:064x}", path=f"m/{i}.png", thumb_path=f"t/{i}.jpg", mime="image/png", width=10,
                      height=10, frames=1, size_bytes=100, phash=f"{i:016x}")  # fmt: skip
            session.add(m)
            media.append(m)
        session.flush()
        # clusters: {m0, m1, m5}, {m2}, {m3, m6}; m4 not computed yet
        for member, first in ((0, 0), (1, 0), (5, 0), (2, 2), (3, 3), (6, 3)):
            media[member].dup_cluster = media[first].id
        posts = [Post(source="c", external_id=f"c{i}", text="", status="queued") for i in range(7)]
        session.add_all(posts)
        session.flush()
        links = {0: [0], 1: [1, 4], 2: [2], 3: [4], 4: [], 5: [3, 5], 6: [6]}
        for post_index, media_indexes in links.items():
            for position, m in enumerate(media_indexes):
                session.add(PostMedia(post_id=posts[post_index].id, position=position, media_id=media[m].id))
        pid = [post.id for post in posts]
    with desk.sessions() as session:
        first_cluster = sorted([pid[0], pid[1], pid[5]])
        assert cluster_post_ids(session, pid[0]) == first_cluster
        assert cluster_post_ids(session, pid[1]) == first_cluster
        # a post in two clusters brings both
        assert cluster_post_ids(session, pid[5]) == sorted([pid[0], pid[1], pid[5], pid[6]])
        assert cluster_post_ids(session, pid[6]) == sorted([pid[5], pid[6]])
        assert cluster_post_ids(session, pid[2]) == [pid[2]]  # a cluster of one
        assert cluster_post_ids(session, pid[3]) == [pid[3]]  # its image has no cluster yet
        assert cluster_post_ids(session, pid[4]) == [pid[4]]  # no images
        assert cluster_post_ids(session, pid[5], limit=2) == first_cluster[:2]
