"""review/metrics/agreement.py, the humans against each other, checked against scikit-learn,
statsmodels and krippendorff on the same labels, on SQLite and Postgres."""

from __future__ import annotations

from statistics import multimode

import numpy as np
import pytest
from sqlalchemy import text

from review.metrics.agreement import agreement
from tests.conftest import account
from tests.factories import metrics_world


def test_agreement_matches_scikit_learn_statsmodels_and_krippendorff(desk) -> None:
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    humans, *_ = metrics_world(desk, n=400, seed=11)
    with desk.sessions() as session:
        report = agreement(session, account(desk, "lead"))
        rows = session.execute(
            text(
                "SELECT e.post_id, u.username, e.label_category "
                "FROM review_event e JOIN app_user u ON u.id = e.user_id "
                "WHERE e.id IN (SELECT max(id) FROM review_event WHERE action IN ('confirm', 'overturn') "
                "GROUP BY post_id, user_id) AND e.post_id IN (SELECT id FROM post WHERE status = 'decided')"
            )
        ).all()
        final = session.execute(  # the final label of each decided post, beside the verdict shown
            text(
                "SELECT u.username, e.label_category, v.parse_status = 'ok', "
                "CASE WHEN v.violation THEN v.category ELSE 'none' END "
                "FROM review_event e JOIN app_user u ON u.id = e.user_id JOIN verdict v ON v.id = e.verdict_id "
                "WHERE e.id IN (SELECT max(id) FROM review_event WHERE action IN ('confirm', 'overturn') "
                "GROUP BY post_id) AND e.post_id IN (SELECT id FROM post WHERE status = 'decided')"
            )
        ).all()
    given: dict[int, dict[str, str]] = {}
    for post_id, user, category in rows:
        given.setdefault(post_id, {})[user] = category
    shared = {p: by for p, by in given.items() if len(by) > 1}
    assert report.posts == len(shared) == 40  # every tenth post; every twentieth has three raters

    for pair in report.pairs:
        both = [(by[pair.first], by[pair.second]) for by in shared.values() if pair.first in by and pair.second in by]
        assert pair.posts == len(both)
        expected = cohen_kappa_score([a for a, _ in both], [b for _, b in both])
        assert pair.kappa == pytest.approx(expected), (pair.first, pair.second)

    names = sorted({c for by in shared.values() for c in by.values()})
    two = [[by[u] for u in sorted(by)] for by in shared.values() if len(by) == report.fleiss_raters]
    table, _ = aggregate_raters(np.array([[names.index(c) for c in item] for item in two]), n_cat=len(names))
    assert report.fleiss_raters == 2 and report.fleiss_posts == len(two) == 20
    assert report.fleiss_kappa == pytest.approx(fleiss_kappa(table))

    people = sorted({u for by in shared.values() for u in by})
    matrix = [[names.index(by[u]) if u in by else np.nan for by in shared.values()] for u in people]
    expected_alpha = krippendorff.alpha(reliability_data=np.array(matrix, dtype=float), level_of_measurement="nominal")
    assert report.krippendorff_alpha == pytest.approx(expected_alpha)

    # each person's agreement with the majority, and the categories argued over most
    by_name = {r.username: r for r in report.raters}
    assert set(by_name) == {"moderator", "other", "third"}
    for name, rater in by_name.items():  # against the strict majority of the others on each post
        verdicts = [
            by[name] == modes[0]
            for by in shared.values()
            if name in by and len(modes := multimode([v for u, v in by.items() if u != name])) == 1
        ]
        assert rater.with_consensus == len(verdicts) and rater.agrees_with_consensus == pytest.approx(np.mean(verdicts))
        assert rater.decisions == sum(1 for user, *_ in final if user == name)  # failed verdicts too
        mine = [(human, model) for user, human, usable, model in final if user == name and usable]
        assert rater.overturn_rate == pytest.approx(np.mean([h != m for h, m in mine]) if mine else 0.0)
    disputed = dict((c, share) for c, _, share in report.disputed)
    assert disputed["hate_harassment"] == pytest.approx(
        np.mean([len(set(by.values())) > 1 for by in shared.values() if "hate_harassment" in by.values()])
    )
