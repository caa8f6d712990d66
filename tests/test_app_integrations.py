"""The Integrations page (pages/integrations.py), headless (AppTest): admins only; an API token
and a signing secret shown once and then nowhere (not on the page, not in the session); a token
revoked after a confirmation; webhook endpoints registered (a refused URL in one line), disabled
and enabled; deliveries listed by endpoint and status and redelivered."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from db.models import DeliveryStatus, WebhookDelivery
from review import tokens
from tests.conftest import account, audit_rows, open_app
from tests.factories import claim_and_decide, spam_queue

pytestmark = pytest.mark.usefixtures("fresh_caches")
PAGE = "pages/integrations.py"


def everything(at: Any) -> str:
    """All the page shows (every element's message, in the main area and the sidebar) and all its
    session holds, as one text to search."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if (proto := getattr(node, "proto", None)) is not None:
            found.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return "\n".join(found) + repr(at.session_state.to_dict())


def submit(at: Any, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()


def error_detail(at: Any) -> str:
    return " ".join(c.value for c in at.code)


@pytest.mark.parametrize("role", ["moderator", "lead"])
def test_only_admins_may_open_the_page(sqlite_desk, monkeypatch, role: str) -> None:
    """Opened by its address (it is not in their navigation), the page refuses and shows nothing."""
    at = open_app(monkeypatch, sqlite_desk, role, PAGE)
    assert not at.exception
    assert any("may not manage integrations" in e.value for e in at.error)
    assert not at.dataframe and not at.text_input and not at.tabs
    admin = open_app(monkeypatch, sqlite_desk, "admin", PAGE)
    assert not admin.exception and not admin.error
    assert [t.label for t in admin.tabs] == ["API tokens", "Webhooks", "How a platform connects"]
    assert any("Authorization: Bearer <token>" in m.value for m in admin.markdown)


def test_a_token_is_shown_once_then_revoked_after_a_confirmation(sqlite_desk, monkeypatch) -> None:
    at = open_app(monkeypatch, sqlite_desk, "admin", PAGE)
    at.text_input(key="token_name").input("bad name!")
    at.multiselect(key="token_scopes").select("read")
    submit(at, "Make token")
    assert [e.value for e in at.error] == ["The token was not made."]
    assert "a token's name is 1 to 64 letters" in error_detail(at)  # the core's message, verbatim

    at.text_input(key="token_name").input("crm_sync")
    at.multiselect(key="token_scopes").select("ingest").select("read")
    submit(at, "Make token")
    assert not at.error
    token = at.code[0].value
    assert tokens.well_formed(token)
    assert token not in repr(at.session_state.to_dict())  # shown, and kept nowhere
    assert any("cannot be shown again" in w.value for w in at.warning)
    used = tokens.authenticate(sqlite_desk.sessions, token)
    assert used is not None and used.scopes == (tokens.Scope.INGEST, tokens.Scope.READ)
    table = at.dataframe[0].value
    assert list(table["name"]) == ["crm_sync"] and list(table["hint"]) == [f"{token[:8]}…"]

    at.run()  # the next click: the token is gone from the page and the session
    assert token not in everything(at)
    assert token[8:20] not in everything(at)

    at.selectbox(key="token_revoke_name").select("crm_sync").run()
    at.button(key="token_revoke").click().run()
    assert any("Revoke `crm_sync`?" in w.value for w in at.warning)
    assert tokens.authenticate(sqlite_desk.sessions, token) is not None  # not before the confirmation
    at.button(key="token_revoke_cancel").click().run()
    assert not at.button(key="token_revoke").disabled
    assert tokens.authenticate(sqlite_desk.sessions, token) is not None
    at.button(key="token_revoke").click().run()
    at.button(key="token_revoke_confirm").click().run()
    assert tokens.authenticate(sqlite_desk.sessions, token) is None
    assert any("Revoked `crm_sync`" in s.value for s in at.success)
    assert at.dataframe[0].value["revoked"].notna().all()
    assert at.selectbox(key="token_revoke_name").options == []  # a revoked token is not offered again
    assert [r.action for r in audit_rows(sqlite_desk) if r.action.startswith("token.")] == [
        "token.create",
        "token.revoke",
    ]


def _deliveries(desk) -> list[WebhookDelivery]:
    with desk.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _all_dead(desk) -> None:
    """What the delivery worker leaves after every retry failed (its own tests: tests/test_delivery.py)."""
    with desk.sessions() as session, session.begin():
        session.execute(update(WebhookDelivery).values(status=DeliveryStatus.DEAD, attempts=8, last_error="HTTP 500"))


def test_webhooks_registered_disabled_and_redelivered(desk, monkeypatch) -> None:
    """On SQLite and Postgres."""
    at = open_app(monkeypatch, desk, "admin", PAGE, WEBHOOK_ALLOW_PRIVATE="true")
    at.text_input(key="webhook_url").input("http://169.254.169.254/latest/meta-data")
    at.multiselect(key="webhook_events").select("decision.confirmed")
    submit(at, "Register")
    assert [e.value for e in at.error] == ["The endpoint was not registered."]
    assert "link-local address (never allowed)" in error_detail(at)
    at.text_input(key="webhook_url").input("http://127.0.0.1:9/hook?key=s3cret")
    submit(at, "Register")  # no event types chosen: nothing is assumed for the admin
    assert "choose the event types" in error_detail(at)

    at.text_input(key="webhook_url").input("http://127.0.0.1:9/hook?key=s3cret")
    at.multiselect(key="webhook_events").select("decision.confirmed").select("decision.overturned")
    at.text_input(key="webhook_description").input("CRM receiver")
    submit(at, "Register")
    assert not at.error
    secret = at.code[0].value
    assert secret.startswith("whsec_") and secret not in repr(at.session_state.to_dict())
    assert any("plain http" in w.value for w in at.warning)
    endpoints = at.dataframe[0].value
    assert list(endpoints["url"]) == ["http://127.0.0.1:9/hook?…"]  # the query string may hold a key
    assert list(endpoints["events"]) == ["decision.confirmed, decision.overturned"]
    at.run()
    assert secret not in everything(at)

    ids = spam_queue(desk, 2)
    ann = account(desk, "moderator", "ann")
    for post_id in ids:
        claim_and_decide(desk, ann, post_id, "confirm")
    _all_dead(desk)
    at.run()
    endpoint = at.dataframe[0].value["id"][0]
    assert at.dataframe[0].value["dead"][0] == 2
    at.selectbox(key="deliveries_status").select("dead").run()
    shown = at.dataframe[1].value
    assert list(shown["type"]) == ["decision.confirmed"] * 2 and list(shown["post"]) == ["t/p1", "t/p0"]
    assert list(shown["attempts"]) == [8, 8] and list(shown["last error"]) == ["HTTP 500"] * 2

    at.selectbox(key="webhook_manage").select(endpoint).run()
    at.button(key="webhook_toggle").click().run()
    assert any(f"Endpoint {endpoint} disabled" in s.value for s in at.success)
    at.button(key="webhook_redeliver_dead").click().run()  # refused while disabled, in one line
    assert [e.value for e in at.error] == ["Nothing was redelivered."]
    assert "disabled" in error_detail(at) and "enable it first" in error_detail(at)
    assert all(d.status == DeliveryStatus.DEAD for d in _deliveries(desk))

    at.button(key="webhook_toggle").click().run()
    assert at.button(key="webhook_redeliver_dead").label == "Redeliver dead events (2)"
    at.button(key="webhook_redeliver_dead").click().run()
    assert any("2 dead deliveries" in s.value for s in at.success)
    assert [(d.status, d.attempts) for d in _deliveries(desk)] == [(DeliveryStatus.PENDING, 0)] * 2

    _all_dead(desk)
    at.run()
    table = at.dataframe[1]
    at.session_state[table.key] = {"selection": {"rows": [1], "columns": [], "cells": []}}  # the older one
    at.run()
    at.button(key="deliveries_redeliver").click().run()
    assert any("1 delivery will be sent again" in s.value for s in at.success)
    assert [d.status for d in _deliveries(desk)] == [DeliveryStatus.PENDING, DeliveryStatus.DEAD]
    assert [r.action for r in audit_rows(desk) if r.action.startswith("webhook.")] == [
        "webhook.add",
        "webhook.change",
        "webhook.change",
        "webhook.redeliver",
        "webhook.redeliver",
    ]
