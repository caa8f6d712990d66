"""The lead pages (Accuracy, Agreement, Activity) headless (AppTest): moderators are refused,
leads see the numbers review.metrics computes (checked against it), the filters narrow them and
stay set from page to page, the confusion drill-down lists a cell's posts, every table offers
its CSV."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from review.browse import get_posts
from review.decisions import Label
from review.media import data_uri
from review.metrics.accuracy import accuracy
from review.metrics.activity import activity
from review.metrics.agreement import agreement
from review.metrics.filters import MetricFilter
from review.visibility import COMMAND_LINE
from tests.conftest import DASHBOARD, account, held_post, open_page
from tests.factories import T0, claim_and_decide, demo_world, metrics_world, queued_posts

pytestmark = pytest.mark.usefixtures("fresh_caches")


def _app(monkeypatch: pytest.MonkeyPatch, desk, role: str, page: str) -> AppTest:
    """The app on ``page``, signed in as a user of ``role``, after its first run."""
    return open_page(monkeypatch, desk, account(desk, role), page)


def _metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} among {[m.label for m in at.metric]}"
    return found[0]


def _downloads(at: AppTest) -> set[str]:
    return {b.proto.label for b in at.get("download_button")}


@pytest.mark.parametrize("page", ["pages/accuracy.py", "pages/agreement.py", "pages/activity.py"])
def test_moderators_are_refused(monkeypatch, sqlite_desk, page) -> None:
    at = _app(monkeypatch, sqlite_desk, "moderator", page)
    assert not at.exception
    assert any("may not" in e.value for e in at.error)
    assert not at.metric


def test_accuracy_page_shows_the_metrics_and_filters_them(monkeypatch, sqlite_desk) -> None:
    desk = sqlite_desk
    metrics_world(desk)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        everything = accuracy(session, lead)
        douyin = accuracy(session, lead, MetricFilter(source="douyin"))
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


def test_agreement_and_activity_pages(monkeypatch, sqlite_desk) -> None:
    desk = sqlite_desk
    metrics_world(desk, n=200, seed=11)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        agr = agreement(session, lead)
        act = activity(session, lead, MetricFilter(since=datetime.combine(T0.date(), time(), tzinfo=UTC)))
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
    assert _metric(at, "Decisions") == f"{sum(d.decisions for d in act.days):,}"
    assert {"Download operations_days.csv", "Download models.csv", "Download moderators.csv"} <= _downloads(at)


def test_empty_desk_says_what_to_do(monkeypatch, sqlite_desk) -> None:
    at = _app(monkeypatch, sqlite_desk, "lead", "pages/accuracy.py")
    assert not at.exception
    assert any("No decided posts" in i.value for i in at.info)
    at.switch_page("pages/agreement.py").run()
    assert any("second review" in i.value for i in at.info)
    at.switch_page("pages/activity.py").run()
    assert not at.exception


def test_simulated_demo_history(sqlite_desk) -> None:
    from sqlalchemy import func, select

    from db.models import Post, PostLabel, User
    from review.auth import PermissionDenied
    from review.demo import DEMO_MODERATORS, demo_waiting, simulate_history
    from review.errors import ReviewError

    desk = sqlite_desk
    demo_world(desk)
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
        acc = accuracy(session, admin)
        agr = agreement(session, admin)
    assert acc.n == done.decisions and agr.posts == done.second_reviews
    assert not demo_waiting(desk.sessions)
    with pytest.raises(ReviewError, match="already"):
        simulate_history(desk.sessions, admin)


def test_accuracy_page_points_to_the_demo_history(monkeypatch, sqlite_desk) -> None:
    """Without decisions the Accuracy page says where the demo's history is simulated (the
    Ingest and score page, or the CLI), and offers no button of its own: a production page does
    not import review.demo."""
    pointer = "simulate ten days of moderation on them on the Ingest and score page"
    demo_world(sqlite_desk)
    for role in ("lead", "admin"):
        at = _app(monkeypatch, sqlite_desk, role, "pages/accuracy.py")
        assert not at.exception
        assert not [b for b in at.button if b.key == "simulate_demo"]
        assert any(pointer in c.value for c in at.caption)
    at.date_input(key="mf_since").set_value(T0.date()).run()  # under a filter: no pointer
    assert not any(pointer in c.value for c in at.caption)
    page = ast.parse((Path(DASHBOARD).parent / "pages" / "accuracy.py").read_text())
    imported = {n.module for n in ast.walk(page) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(page) if isinstance(n, ast.Import) for a in n.names}
    assert "review.demo" not in imported


def test_model_comparison_tab(monkeypatch, sqlite_desk) -> None:
    """An evaluated fine-tuning run shows base and adapter side by side (the run itself is made
    for real in tests/test_finetune.py; here its record is written directly)."""
    from db.models import FinetuneRun

    desk = sqlite_desk
    metrics_world(desk, n=40, seed=4)
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


def test_cached_reuses_a_number_per_function_and_arguments(sqlite_desk) -> None:
    """The pages' cache is keyed by the metrics function itself and its arguments, and still
    refuses a role without the metrics permission when the number is already computed."""
    from pages._analytics import cached
    from review.auth import PermissionDenied

    calls: list[tuple[str, tuple[str, ...]]] = []

    def first(session, actor, flt, *args):
        calls.append(("first", args))
        return len(calls)

    def second(session, actor, flt, *args):
        calls.append(("second", args))
        return len(calls)

    desk, lead = sqlite_desk, account(sqlite_desk, "lead")
    assert cached(first, desk, lead, MetricFilter()) == cached(first, desk, lead, MetricFilter()) == 1
    assert cached(first, desk, lead, MetricFilter(), "week") == 2
    assert cached(second, desk, lead, MetricFilter()) == 3
    assert cached(first, desk, lead, MetricFilter(source="weibo")) == 4
    assert calls == [("first", ()), ("first", ("week",)), ("second", ()), ("first", ())]
    with pytest.raises(PermissionDenied):
        cached(first, desk, account(desk, "moderator"), MetricFilter())


def test_a_confusion_cell_link_opens_its_posts_with_thumbnails(monkeypatch, sqlite_desk, tmp_path: Path) -> None:
    """?human=…&model=… opens the Confusion tab on that cell; its posts show their thumbnails
    blurred as on the Queue page, and one opens on Review by its own link (?post=)."""
    desk = sqlite_desk
    ids = queued_posts(desk, tmp_path, 3)  # ids[0] is violence_gore: its image is blurred
    ann = account(desk, "moderator")
    claim_and_decide(desk, ann, ids[0], "confirm")
    claim_and_decide(desk, ann, ids[1], "overturn", label=Label(False, "none", 0), share=1.0)  # a second review
    at = _app(monkeypatch, desk, "lead", "pages/accuracy.py")
    assert _open_tab(at) == 0
    at.query_params = {"human": "violence_gore", "model": "violence_gore"}
    at.run()
    assert not at.exception and not at.warning and _open_tab(at) == 1
    listed = next(df for df in at.dataframe if "post_id" in df.value.columns)
    assert list(listed.value["post_id"]) == [ids[0]]
    with desk.sessions() as session:
        (thumb,) = [p.media[0].thumb_path for p in get_posts(session, COMMAND_LINE, [ids[0]]).values()]
    assert listed.value["thumbnail"][0] == data_uri(desk.settings.media_dir, thumb, blur=True)

    at.selectbox(key=next(s.key for s in at.selectbox if s.label == "Humans said")).set_value("none").run()
    assert at.query_params == {"human": "none", "model": "violence_gore"}  # the URL follows the pick
    at.query_params = {"human": "sexual", "model": "violence_gore"}  # a category no decided post has
    at.run()
    assert [w.value for w in at.warning] == ["Part of the link was ignored:"]
    assert (
        at.code[0].value == "Ignored human=sexual in the link: no decided post has that category under these filters."
    )
    at.query_params = {"human": "none", "model": "fraud_spam"}
    at.run()
    listed = next(df for df in at.dataframe if "post_id" in df.value.columns)
    assert list(listed.value["post_id"]) == [ids[1]] and listed.value["thumbnail"][0] is not None
    at.session_state[listed.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.button(key="cell_open").click().run()
    assert at.query_params == {"post": str(ids[1])} and held_post(at) == ids[1]  # the lead holds it on Review


def _open_tab(at: AppTest) -> int:
    """The index of the tab the Accuracy page opens on."""
    containers = [n.proto.tab_container for n in _blocks(at._tree) if n.proto.WhichOneof("type") == "tab_container"]
    assert len(containers) == 1
    return containers[0].default_tab_index


def _blocks(node):
    for child in getattr(node, "children", {}).values():
        if hasattr(child, "proto") and hasattr(child.proto, "WhichOneof") and hasattr(child.proto, "tab_container"):
            yield child
        yield from _blocks(child)
