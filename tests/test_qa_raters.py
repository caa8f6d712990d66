"""QA with more than two raters (QA_RATERS): a post drawn for second review collects labels from
k different moderators, each blind to the others', through the desk's own claim and decide; the
agreement numbers over k raters are checked against statsmodels and krippendorff."""

from __future__ import annotations

import random

import pytest

from review.config import load_settings
from review.decisions import Label, claim, decide, history, undo
from review.errors import ConfigError, ReviewError
from review.metrics.agreement import agreement
from review.visibility import blind_for
from tests.conftest import post_status
from tests.factories import SECOND_REVIEWS, claim_and_decide, queued_posts_with_verdicts, staff


def _label(category: str) -> Label:
    return Label(category != "none", category, 0 if category == "none" else 2)


def test_three_raters_label_blind_and_the_third_settles(desk) -> None:
    p = staff(desk)
    ann, bob, cid, lea = p["ann"], p["bob"], p["cid"], p["lea"]
    post_id = queued_posts_with_verdicts(desk, ["fraud_spam"])[0]
    first = claim_and_decide(desk, ann, post_id, "confirm", note="spam", share=1.0, raters=3)
    assert post_status(desk, post_id) == "second_review"

    assert claim(desk.sessions, bob, flt=SECOND_REVIEWS) is not None
    second = decide(desk.sessions, bob, post_id, "overturn", label=_label("illegal_goods"), raters=3)
    assert second.second_review is True
    assert post_status(desk, post_id) == "second_review"  # two labels of three: still waiting

    # neither earlier rater may take it again; a third person may, and works blind to both labels
    assert claim(desk.sessions, ann, post_id) is None and claim(desk.sessions, bob, post_id) is None
    assert claim(desk.sessions, bob, flt=SECOND_REVIEWS) is None
    assert claim(desk.sessions, cid, flt=SECOND_REVIEWS) is not None
    with desk.sessions() as session:
        assert blind_for(session, cid, post_id) is True
        assert blind_for(session, bob, post_id) is False  # labelled already: sees the others now
        seen = {h.event_id: h for h in history(session, cid, post_id)}
    assert seen[first.id].label is None and seen[second.id].label is None
    assert seen[first.id].label_hidden and seen[second.id].label_hidden and seen[first.id].note is None

    # the third rater's undo hands the post back to them, still in its second review
    third = decide(desk.sessions, cid, post_id, "overturn", label=_label("sexual"), raters=3)
    assert post_status(desk, post_id) == "decided"
    undo(desk.sessions, cid, third.id)
    assert post_status(desk, post_id) == "second_review"
    decide(desk.sessions, cid, post_id, "confirm", raters=3)
    assert post_status(desk, post_id) == "decided"
    assert claim(desk.sessions, lea, post_id) is None  # settled: nobody else is asked

    with desk.sessions() as session:
        agr = agreement(session, lea)
    assert (agr.posts, agr.fleiss_raters, agr.fleiss_posts) == (1, 3, 1)
    assert {(x.first, x.second) for x in agr.pairs} == {("ann", "bob"), ("ann", "cid"), ("bob", "cid")}


def test_two_raters_stay_the_default(desk) -> None:
    p = staff(desk)
    post_id = queued_posts_with_verdicts(desk, ["fraud_spam"])[0]
    claim_and_decide(desk, p["ann"], post_id, "confirm", share=1.0)
    assert claim(desk.sessions, p["bob"], flt=SECOND_REVIEWS) is not None
    decide(desk.sessions, p["bob"], post_id, "confirm")
    assert post_status(desk, post_id) == "decided"


def test_fleiss_and_krippendorff_over_three_raters_from_the_flow(desk) -> None:
    import krippendorff
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    p = staff(desk)
    people = [p["ann"], p["bob"], p["cid"], p["lea"]]
    categories = ["none", "fraud_spam", "sexual", "hate_harassment"]
    rng = random.Random(13)
    truth = [rng.choice(categories) for _ in range(24)]
    ids = queued_posts_with_verdicts(desk, truth, prefix="q")
    given: dict[int, dict[str, str]] = {}
    for k, (post_id, true) in enumerate(zip(ids, truth, strict=True)):
        first = people[k % 4]
        label = true if rng.random() < 0.7 else rng.choice(categories)
        claim_and_decide(desk, first, post_id, "overturn", label=_label(label), share=1.0, raters=3)
        given[post_id] = {first.username: label}
        for step in (1, 2):  # two more people, whoever the queue hands it to
            rater = people[(k + step) % 4]
            got = claim(desk.sessions, rater, post_id, flt=SECOND_REVIEWS)
            assert got is not None, (post_id, rater.username)
            label = true if rng.random() < 0.7 else rng.choice(categories)
            decide(desk.sessions, rater, post_id, "overturn", label=_label(label), raters=3)
            given[post_id][rater.username] = label
        assert post_status(desk, post_id) == "decided"

    with desk.sessions() as session:
        agr = agreement(session, p["lea"])
    assert (agr.posts, agr.fleiss_raters, agr.fleiss_posts) == (24, 3, 24)
    table, _ = aggregate_raters([[by[u] for u in sorted(by)] for by in given.values()])
    assert agr.fleiss_kappa == pytest.approx(fleiss_kappa(table, method="fleiss"))
    names = sorted({u for by in given.values() for u in by})
    codes = {c: i for i, c in enumerate(categories)}
    data = [[codes[given[post][u]] if u in given[post] else float("nan") for post in ids] for u in names]
    assert agr.krippendorff_alpha == pytest.approx(krippendorff.alpha(data, level_of_measurement="nominal"))


@pytest.mark.parametrize(("value", "ok"), [("3", True), ("10", True), ("1", False), ("11", False), ("x", False)])
def test_qa_raters_setting(value: str, ok: bool) -> None:
    env = {"QA_RATERS": value, "REVIEW_CONFIG": ""}
    if ok:
        assert load_settings(env).qa_raters == int(value)
    else:
        with pytest.raises(ConfigError, match="qa_raters"):
            load_settings(env)


def test_demo_history_with_three_raters(sqlite_desk) -> None:
    from review.demo import simulate_history
    from tests.conftest import account
    from tests.factories import demo_world

    desk = sqlite_desk
    demo_world(desk)
    admin = account(desk, "admin")
    with pytest.raises(ReviewError, match="2 or 3 raters"):
        simulate_history(desk.sessions, admin, raters=4)
    done = simulate_history(desk.sessions, admin, raters=3)
    with desk.sessions() as session:
        agr = agreement(session, admin)
    assert agr.posts >= 1 and agr.fleiss_raters == 3 and done.second_reviews == 2 * agr.posts
