"""The lead pages headless (AppTest) and ``python -m review report``: moderators are refused,
leads see the numbers review.metrics computes (checked against it), the filters narrow them and
stay set from page to page, the confusion drill-down lists a cell's posts, every table offers
its CSV; the CLI writes the same tables as text, JSON and CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._common import ACTOR
from review import metrics
from review.cli import main
from review.metrics import MetricFilter
from tests.conftest import account
from tests.test_metrics import T0, _world

DASHBOARD = str(Path(__file__).resolve().parents[1] / "dashboard.py")


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    import streamlit as st

    st.cache_resource.clear()  # the desk is cached per process; each test has its own database
    st.cache_data.clear()


def _app(monkeypatch: pytest.MonkeyPatch, desk, role: str, page: str) -> AppTest:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.session_state[ACTOR] = account(desk, role)
    at.switch_page(page)
    return at.run()


def _metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} among {[m.label for m in at.metric]}"
    return found[0]


def _downloads(at: AppTest) -> set[str]:
    return {b.proto.label for b in at.get("download_button")}


@pytest.mark.parametrize("page", ["pages/accuracy.py", "pages/agreement.py", "pages/activity.py"])
def test_moderators_are_refused(monkeypatch, sqlite_desk, page) -> None:  # type: ignore[no-untyped-def]
    at = _app(monkeypatch, sqlite_desk, "moderator", page)
    assert not at.exception
    assert any("may not" in e.value for e in at.error)
    assert not at.metric


def test_accuracy_page_shows_the_metrics_and_filters_them(monkeypatch, sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    _world(desk)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        everything = metrics.accuracy(session, lead)
        douyin = metrics.accuracy(session, lead, MetricFilter(source="douyin"))
    at = _app(monkeypatch, desk, "lead", "pages/accuracy.py")
    assert not at.exception
    assert _metric(at, "Decided posts") == f"{everything.n:,}"
    assert _metric(at, "Precision") == f"{everything.binary.precision:.1%}"
    assert _metric(at, "ROC-AUC") == f"{everything.binary.auc:.3f}"
    assert _metric(at, "Model failures") == "1"
    assert {"Download categories.csv", "Download calibration.csv", "Download thresholds.csv",
            "Download trend_week.csv", "Download by_model_id.csv"} <= _downloads(at)  # fmt: skip

    # the drill-down: the worst cell is preselected; picking another lists its posts
    at.selectbox(key=next(s.key for s in at.selectbox if s.label == "Humans said")).set_value("fraud_spam")
    at.run()
    at.selectbox(key=next(s.key for s in at.selectbox if s.label == "Model said")).set_value("none")
    at.run()
    assert not at.exception
    listed = next(df for df in at.dataframe if "post_id" in df.value.columns)
    assert len(listed.value) == everything.confusion.get(("fraud_spam", "none"), 0) > 0

    # threshold advice follows the target
    at.number_input(key="acc_target").set_value(0.8).run()
    assert any("auto-remove" in md.value for md in at.markdown)

    at.selectbox(key="mf_source").set_value("douyin").run()
    assert _metric(at, "Decided posts") == f"{douyin.n:,}" and douyin.n < everything.n

    # the filter stays set on the next lead page
    at.switch_page("pages/agreement.py").run()
    assert not at.exception
    assert at.selectbox(key="mf_source").value == "douyin"


def test_agreement_and_activity_pages(monkeypatch, sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    _world(desk, n=200, seed=11)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        agr = metrics.agreement(session, lead)
        ops = metrics.operations(session, lead, MetricFilter(since=datetime.combine(T0.date(), time(), tzinfo=UTC)))
    at = _app(monkeypatch, desk, "lead", "pages/agreement.py")
    assert not at.exception
    assert _metric(at, "Posts with two or more labels") == f"{agr.posts:,}"
    assert _metric(at, "Fleiss' κ") == f"{agr.fleiss_kappa:.3f}"
    assert _metric(at, "Krippendorff's α") == f"{agr.krippendorff_alpha:.3f}"
    assert {"Download agreement_pairs.csv", "Download agreement_raters.csv"} <= _downloads(at)

    at.switch_page("pages/activity.py").run()
    assert not at.exception
    assert any("The last 30 days" in c.value for c in at.caption)  # without a start date
    at.date_input(key="mf_since").set_value(T0.date()).run()
    assert not at.exception
    assert _metric(at, "Decisions") == f"{sum(d.decisions for d in ops.days):,}"
    assert {"Download operations_days.csv", "Download models.csv", "Download moderators.csv"} <= _downloads(at)


def test_empty_desk_says_what_to_do(monkeypatch, sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    at = _app(monkeypatch, sqlite_desk, "lead", "pages/accuracy.py")
    assert not at.exception
    assert any("No decided posts" in i.value for i in at.info)
    at.switch_page("pages/agreement.py").run()
    assert any("second review" in i.value for i in at.info)
    at.switch_page("pages/activity.py").run()
    assert not at.exception


def test_report_cli_formats(monkeypatch, sqlite_desk, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    _world(desk, n=120, seed=2)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    with desk.sessions() as session:
        expected = metrics.accuracy(session, account(desk, "lead"), MetricFilter(source="weibo"))

    assert main(["report", "--format", "json", "--source", "weibo", "--section", "accuracy"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["filters"] == {"source": "weibo"}
    headline = body["tables"]["accuracy"][0]
    assert headline["posts"] == expected.n
    assert headline["f1"] == pytest.approx(expected.binary.f1)
    assert {"categories", "confusion", "calibration", "thresholds", "trend_week", "by_source"} <= set(body["tables"])

    assert main(["report", "--format", "csv", "--table", "categories", "--source", "weibo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "category,precision,recall,f1,support,predicted"
    assert len(lines) == 1 + len(expected.categories)

    out = tmp_path / "report"
    assert main(["report", "--format", "csv", "--out", str(out)]) == 0
    written = {p.name for p in out.iterdir()}
    assert {"accuracy.csv", "agreement_pairs.csv", "operations_days.csv", "models.csv"} <= written

    assert main(["report", "--format", "csv"]) == 2  # which table?
    assert "--table" in capsys.readouterr().err
    assert main(["report", "--table", "nope"]) == 2
    with pytest.raises(SystemExit) as bad:
        main(["report", "--since", "yesterday"])
    assert bad.value.code == 2
    assert main(["report", "--since", "2026-11-01", "--until", "2026-11-01", "--section", "accuracy"]) == 0
    assert "== accuracy" in capsys.readouterr().out


def _demo_world(desk) -> list[int]:  # type: ignore[no-untyped-def]
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


def test_simulated_demo_history(sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from db.models import Post, PostLabel, User
    from review.auth import PermissionDenied
    from review.demo import DEMO_MODERATORS, demo_waiting, simulate_history
    from review.errors import ReviewError

    desk = sqlite_desk
    _demo_world(desk)
    admin = account(desk, "admin")
    assert demo_waiting(desk.sessions)
    with pytest.raises(PermissionDenied):
        simulate_history(desk.sessions, account(desk, "lead"))
    done = simulate_history(desk.sessions, admin)
    assert done.decisions >= 20 and done.second_reviews >= 1 and done.escalations == 2 and done.left_waiting >= 10
    with desk.sessions() as session:
        assert session.scalar(select(func.count()).select_from(PostLabel)) == done.decisions
        moderators = session.execute(select(User.username, User.active, User.password_hash)).all()
        assert {(u, a, p) for u, a, p in moderators if u in DEMO_MODERATORS} == {
            (u, False, None) for u in DEMO_MODERATORS
        }
        early = session.scalar(  # nothing decided before it arrived
            select(func.count()).select_from(PostLabel).where(PostLabel.first_decided_at < PostLabel.ingested_at)
        )
        assert early == 0
        assert session.scalar(select(func.count()).where(Post.status == "queued")) == done.left_waiting
        report = metrics.accuracy(session, admin)
        agreement = metrics.agreement(session, admin)
    assert report.n == done.decisions and agreement.posts == done.second_reviews
    assert not demo_waiting(desk.sessions)
    with pytest.raises(ReviewError, match="already"):
        simulate_history(desk.sessions, admin)


def test_accuracy_page_offers_the_demo_history_to_admins(monkeypatch, sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    _demo_world(sqlite_desk)
    lead = _app(monkeypatch, sqlite_desk, "lead", "pages/accuracy.py")
    assert (
        not lead.exception
        and not [b for b in lead.button if b.key == "simulate_demo"]
        and any("An admin can" in c.value for c in lead.caption)
    )
    at = _app(monkeypatch, sqlite_desk, "admin", "pages/accuracy.py")
    at.button(key="simulate_demo").click().run()
    assert not at.exception
    assert int(_metric(at, "Decided posts")) >= 20


def test_model_comparison_tab(monkeypatch, sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    """An evaluated fine-tuning run shows base and adapter side by side (the run itself is made
    for real in tests/test_finetune.py; here its record is written directly)."""
    from db.models import FinetuneRun

    desk = sqlite_desk
    _world(desk, n=40, seed=4)
    result = {"examples": 12, "precision": 0.5, "recall": 0.4, "f1": 0.44, "accuracy": 0.6, "roc_auc": None,
              "category_macro_f1": 0.3, "category_accuracy": 0.5, "unparsed_answers": 1}  # fmt: skip
    evaluation = {"evaluated_at": "2026-12-01T10:00:00+00:00", "export": "/x", "split": "val",
                  "results": [{**result, "model": "m", "adapter": None},
                              {**result, "model": "m + a", "adapter": "/a", "f1": 0.61}]}  # fmt: skip
    with desk.sessions() as session, session.begin():
        session.add(FinetuneRun(base_model="m", adapter_path="/a", status="done", params={},
                                metrics={"steps": 2, "evaluation": evaluation}))  # fmt: skip
    at = _app(monkeypatch, desk, "lead", "pages/accuracy.py")
    assert not at.exception
    assert "Download model_comparison.csv" in _downloads(at)
    shown = next(df.value for df in at.dataframe if "adapter" in df.value.columns)
    assert list(shown["f1"]) == [0.44, 0.61] and list(shown["variant"]) == ["base", "adapter"]
    assert list(shown["model"]) == ["m", "m + a"]
