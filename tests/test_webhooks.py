"""review/webhooks.py: which addresses a webhook may reach, the URL check, and the admin's
endpoints and deliveries (add, list, disable, enable, deliveries, redeliver) with their audit
rows. The sending is tests/test_delivery.py's."""

from __future__ import annotations

import ipaddress
import json

import pytest
from sqlalchemy import select, update

from db.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint
from review import webhooks
from review.auth import OPERATOR, PermissionDenied
from review.desk import Desk
from review.webhooks import WebhookError, add_endpoint, check_url, is_public
from tests.conftest import audit_rows
from tests.factories import claim_and_decide, spam_queue, staff

# address, public without the setting, allowed with WEBHOOK_ALLOW_PRIVATE
ADDRESSES = [
    ("8.8.8.8", True, True),
    ("2001:4860:4860::8888", True, True),
    ("127.0.0.1", False, True),
    ("::1", False, True),
    ("::ffff:127.0.0.1", False, True),  # IPv4-mapped: Python says not loopback, only reserved
    ("2002:7f00:1::", False, True),  # 6to4 of 127.0.0.1: Python says global
    ("64:ff9b::7f00:1", False, True),  # NAT64 of 127.0.0.1: Python says global
    ("10.1.2.3", False, True),
    ("192.168.1.1", False, True),
    ("fc00::1", False, True),
    ("100.64.0.1", False, True),  # carrier-grade NAT: neither private nor global
    ("169.254.169.254", False, False),  # cloud metadata: link-local, never
    ("::ffff:169.254.169.254", False, False),
    ("fe80::1", False, False),
    ("224.0.1.1", False, False),  # multicast: Python says global
    ("ff0e::1", False, False),
    ("0.0.0.0", False, False),
    ("::", False, False),
    ("240.0.0.1", False, False),  # reserved
    ("fd00:ec2::254", False, False),  # AWS metadata over IPv6: private by Python's rule, metadata always refused
    ("100.100.100.200", False, False),  # Alibaba's metadata: carrier-grade NAT range
    ("168.63.129.16", False, False),  # Azure's wireserver: a public address
    ("::ffff:100.100.100.200", False, False),  # … also when tunnelled
]


@pytest.mark.parametrize(("address", "public", "with_setting"), ADDRESSES)
def test_which_addresses_a_webhook_may_reach(address: str, public: bool, with_setting: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert is_public(ip, allow_private=False) is public
    assert is_public(ip, allow_private=True) is with_setting


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/services/…"),
        ("https://example.com/hook?token=abc", "https://example.com/hook?…"),
        ("https://example.com/hook", "https://example.com/hook"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/", "https://example.com/"),
        ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/a/…"),
        ("http://[::1]:9/hook/", "http://[::1]:9/hook/"),
        ("http://[::1]:9/hook/?key=1", "http://[::1]:9/hook/?…"),
        (f"https://example.com/{'k' * 40}", "https://example.com/…"),  # one long segment may be a key itself
        (f"https://example.com/{'k' * 40}?x=1", "https://example.com/…"),
    ],
)
def test_a_url_is_shown_without_what_may_hold_a_key(url: str, shown: str) -> None:
    assert webhooks.shown_url(url) == shown


@pytest.fixture
def open_settings(sqlite_desk: Desk):
    return sqlite_desk.settings.with_overrides(webhook_allow_private=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "only http and https URLs, not ftp"),
        ("http:///hook", "names no host"),
        ("https://user:pass@example.com/hook", "no user name or password"),
        ("https://example.com/hook#part", "no #fragment"),
        ("https://example.com/" + "a" * 2100, "longer than 2048"),
        ("http://nosuch.invalid/hook", "cannot resolve nosuch.invalid"),
        ("http://169.254.169.254/latest/meta-data", "link-local address (never allowed)"),
        ("http://[::ffff:169.254.169.254]/", "link-local address (never allowed)"),
        ("http://[fd00:ec2::254]/latest/meta-data", "fd00:ec2::254, a cloud metadata address (never allowed)"),
        ("http://100.100.100.200/latest/meta-data", "a cloud metadata address (never allowed)"),
    ],
)
def test_a_url_the_rule_refuses_is_refused_with_its_reason(open_settings, url: str, reason: str) -> None:
    with pytest.raises(WebhookError, match=reason.replace("(", r"\(").replace(")", r"\)")) as refused:
        check_url(url, open_settings)
    assert "\n" not in str(refused.value)


def test_loopback_and_private_hosts_need_the_setting(sqlite_desk: Desk, open_settings) -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://2130706433/", "http://10.0.0.7/"):
        with pytest.raises(WebhookError, match="WEBHOOK_ALLOW_PRIVATE"):
            check_url(url, sqlite_desk.settings)
        assert check_url(url, open_settings) == url
    assert check_url("HTTP://LocalHost/hook?x=1", open_settings) == "http://localhost/hook?x=1"  # normalised


def _decided(desk: Desk, n: int) -> list[int]:
    """``n`` queued posts, each confirmed by a moderator (so each has an outgoing event)."""
    people = staff(desk)
    ids = spam_queue(desk, n)
    for post_id in ids:
        claim_and_decide(desk, people["ann"], post_id, "confirm")
    return ids


def _deliveries(desk: Desk) -> list[WebhookDelivery]:
    with desk.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_endpoints_are_added_listed_disabled_and_enabled_with_audit_rows(desk: Desk) -> None:
    settings = desk.settings.with_overrides(webhook_allow_private=True)
    info, secret = add_endpoint(
        desk.sessions, OPERATOR, "http://127.0.0.1:9/hook?token=abc", settings,
        event_types=["decision.overturned", "decision.confirmed"], description="moderation actions",
    )  # fmt: skip
    assert secret.startswith("whsec_") and len(secret) == 6 + 44
    assert secret != add_endpoint(desk.sessions, OPERATOR, "http://127.0.0.1:9/other", settings)[1]
    assert info.event_types == ("decision.confirmed", "decision.overturned")  # in the desk's order
    assert info.active and not info.encrypted
    listed = webhooks.list_endpoints(desk.sessions)
    assert [e.id for e in listed] == [info.id, info.id + 1]
    assert listed[1].event_types == ("*",)

    _decided(desk, 2)  # both endpoints take confirmations
    counts = {e.id: (e.pending, e.delivered, e.dead) for e in webhooks.list_endpoints(desk.sessions)}
    assert counts == {info.id: (2, 0, 0), info.id + 1: (2, 0, 0)}

    off = webhooks.set_active(desk.sessions, OPERATOR, info.id, False)
    assert not off.active and off.disabled_reason == "disabled by (command line)" and off.pending == 2
    assert webhooks.set_active(desk.sessions, OPERATOR, info.id, True).disabled_reason is None

    rows = audit_rows(desk)
    assert [r.action for r in rows] == ["webhook.add", "webhook.add", "webhook.change", "webhook.change"]
    assert rows[0].subject == f"endpoint {info.id}"
    assert rows[0].details == {
        "url": "http://127.0.0.1:9/hook?…",
        "event_types": "decision.confirmed,decision.overturned",
    }
    assert [r.details["active"] for r in rows[2:]] == [False, True]
    assert secret not in json.dumps([r.details for r in rows]) and "abc" not in json.dumps([r.details for r in rows])


def test_a_disabled_endpoint_gets_no_new_events(sqlite_desk: Desk, open_settings) -> None:
    info, _ = add_endpoint(sqlite_desk.sessions, OPERATOR, "http://127.0.0.1:9/hook", open_settings)
    webhooks.set_active(sqlite_desk.sessions, OPERATOR, info.id, False)
    _decided(sqlite_desk, 1)
    assert _deliveries(sqlite_desk) == []


def test_an_endpoint_only_gets_the_types_it_took(sqlite_desk: Desk, open_settings) -> None:
    add_endpoint(sqlite_desk.sessions, OPERATOR, "http://127.0.0.1:9/h", open_settings, event_types=["decision.undone"])
    _decided(sqlite_desk, 1)
    assert _deliveries(sqlite_desk) == []


def test_bad_requests_are_refused_in_one_line(sqlite_desk: Desk, open_settings) -> None:
    with pytest.raises(WebhookError, match="unknown event type decision.made; the types are decision.confirmed"):
        add_endpoint(sqlite_desk.sessions, OPERATOR, "http://127.0.0.1/", open_settings, event_types=["decision.made"])
    with pytest.raises(WebhookError, match="one line"):
        add_endpoint(sqlite_desk.sessions, OPERATOR, "http://127.0.0.1/", open_settings, description="a\nb")
    with pytest.raises(WebhookError, match="no webhook endpoint 42"):
        webhooks.set_active(sqlite_desk.sessions, OPERATOR, 42, False)
    with pytest.raises(WebhookError, match="unknown delivery status"):
        webhooks.deliveries(sqlite_desk.sessions, status="lost")
    with pytest.raises(WebhookError, match="no delivery 7"):
        webhooks.redeliver(sqlite_desk.sessions, OPERATOR, delivery_ids=[7])
    with pytest.raises(WebhookError, match="at least one delivery"):
        webhooks.redeliver(sqlite_desk.sessions, OPERATOR, delivery_ids=[])
    with pytest.raises(WebhookError, match="either"):
        webhooks.redeliver(sqlite_desk.sessions, OPERATOR)
    assert webhooks.list_endpoints(sqlite_desk.sessions) == [] and audit_rows(sqlite_desk) == []


def test_dead_deliveries_are_redelivered_with_the_same_event(desk: Desk) -> None:
    settings = desk.settings.with_overrides(webhook_allow_private=True)
    info, _ = add_endpoint(desk.sessions, OPERATOR, "http://127.0.0.1:9/hook", settings)
    _decided(desk, 3)
    first, second, third = _deliveries(desk)
    with desk.sessions() as session, session.begin():  # as the worker leaves them after the last retry
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([first.id, second.id]))
            .values(status=DeliveryStatus.DEAD, attempts=8, dead_at=first.next_attempt_at, last_error="HTTP 500")
        )
    listed = webhooks.deliveries(desk.sessions, endpoint_id=info.id, status="dead")
    assert [d.id for d in listed] == [second.id, first.id]  # newest first
    assert listed[1].attempts == 8 and listed[1].last_error == "HTTP 500" and listed[1].type == "decision.confirmed"
    assert (listed[1].source, listed[1].external_id) == ("t", "p0")

    assert webhooks.redeliver(desk.sessions, OPERATOR, endpoint_id=info.id) == 2
    after = {d.id: d for d in _deliveries(desk)}
    assert all(after[d.id].status == "pending" and after[d.id].attempts == 0 for d in (first, second, third))
    assert after[first.id].dead_at is None and after[first.id].event_id == first.event_id  # the same event, the same id
    with desk.sessions() as session:
        assert session.scalar(select(OutboxEvent.uid).where(OutboxEvent.id == first.event_id)) == listed[1].event_uid

    webhooks.set_active(desk.sessions, OPERATOR, info.id, False)
    with pytest.raises(WebhookError, match=f"endpoint {info.id} is disabled .*enable it first"):
        webhooks.redeliver(desk.sessions, OPERATOR, delivery_ids=[third.id])
    webhooks.set_active(desk.sessions, OPERATOR, info.id, True)
    assert webhooks.redeliver(desk.sessions, OPERATOR, delivery_ids=[third.id]) == 1
    redone = audit_rows(desk, "webhook.redeliver")
    assert [(r.subject, r.details["count"]) for r in redone] == [(f"endpoint {info.id}", 2), ("deliveries", 1)]
    assert redone[1].details["delivery_ids"] == [third.id]


def test_a_rotated_secret_replaces_the_old_one(sqlite_desk: Desk, open_settings) -> None:
    info, old = add_endpoint(sqlite_desk.sessions, OPERATOR, "http://127.0.0.1:9/hook", open_settings)
    rotated, new = webhooks.rotate_secret(sqlite_desk.sessions, OPERATOR, info.id)
    assert rotated.id == info.id and new != old and new.startswith("whsec_")
    with sqlite_desk.sessions() as session:
        assert session.get(WebhookEndpoint, info.id).secret == new
    last = audit_rows(sqlite_desk)[-1]
    assert (last.action, last.details) == ("webhook.change", {"secret": "rotated"})


def test_only_admins_manage_webhooks(sqlite_desk: Desk, open_settings) -> None:
    lead = staff(sqlite_desk)["lea"]
    with pytest.raises(PermissionDenied, match="a lead may not integrations"):
        add_endpoint(sqlite_desk.sessions, lead, "http://127.0.0.1:9/hook", open_settings)
    info, _ = add_endpoint(sqlite_desk.sessions, OPERATOR, "http://127.0.0.1:9/hook", open_settings)
    with pytest.raises(PermissionDenied):
        webhooks.set_active(sqlite_desk.sessions, lead, info.id, False)
    with pytest.raises(PermissionDenied):
        webhooks.redeliver(sqlite_desk.sessions, lead, endpoint_id=info.id)
    with pytest.raises(PermissionDenied):
        webhooks.rotate_secret(sqlite_desk.sessions, lead, info.id)
    assert webhooks.list_endpoints(sqlite_desk.sessions)[0].active
    assert [r.action for r in audit_rows(sqlite_desk)] == ["webhook.add"]


def test_the_command_line_manages_endpoints_and_deliveries(
    sqlite_cli: Desk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from review.cli import main

    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
    url = "http://127.0.0.1:9/hook"
    assert main(["webhook", "add", url, "--events", "decision.confirmed", "--description", "ours"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"added webhook endpoint 1: {url} (decision.confirmed)\n")
    assert "signing secret (shown once): whsec_" in out and "not encrypted" in err
    _decided(sqlite_cli, 1)
    assert main(["webhook", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed == f"1\t{url}\tdecision.confirmed\tactive\tpending 1, delivered 0, dead 0\tours\n"
    assert main(["webhook", "disable", "1"]) == 0 and main(["webhook", "enable", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "webhook endpoint 1 disabled (1 pending)",
        "webhook endpoint 1 enabled (1 pending)",
    ]
    assert main(["webhook", "rotate", "1"]) == 0
    assert capsys.readouterr().out.startswith("webhook endpoint 1: new signing secret (shown once): whsec_")
    assert main(["webhook", "deliveries", "--status", "pending"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("1\tendpoint 1\tevt_") and "decision.confirmed\tt/p0\tpending" in listed
    assert main(["webhook", "redeliver", "--endpoint", "1"]) == 0
    assert capsys.readouterr().out == "0 deliveries to send again\n"  # none is dead
    assert main(["webhook", "redeliver", "--delivery", "1"]) == 0
    assert capsys.readouterr().out == "1 delivery to send again\n"
    assert main(["webhook", "add", "ftp://127.0.0.1/"]) == 2
    assert capsys.readouterr().err == "error: webhook URL refused: only http and https URLs, not ftp\n"
    monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE")
    assert main(["webhook", "add", url]) == 2
    assert "a loopback address; set WEBHOOK_ALLOW_PRIVATE=true" in capsys.readouterr().err
    actions = [r.action for r in audit_rows(sqlite_cli)]
    assert actions == ["webhook.add"] + ["webhook.change"] * 3 + ["webhook.redeliver"] * 2
