"""Webhook endpoints: where the desk's decisions are delivered, and what admins see and redo of
those deliveries. The sending itself is the delivery worker's (review/delivery.py).

An endpoint is a URL, the event types it takes (review/outbox.py ``EVENT_TYPES``, or all) and a
secret that signs every delivery (Standard Webhooks: ``whsec_`` + base64 of 32 random bytes). The
secret is stored, since signing needs it, and shown once, when the endpoint is made.

A webhook URL is a way into the desk's own network (server-side request forgery), so
:func:`check_url` admits only ``http``/``https`` URLs without credentials whose host resolves to
public addresses only (:func:`is_public`); ``WEBHOOK_ALLOW_PRIVATE`` admits loopback and private
ranges for single-host installs and tests. Link-local (cloud metadata at 169.254.169.254),
multicast, unspecified and reserved addresses, and the clouds' other metadata addresses
(``METADATA``), are refused always. The worker checks the addresses again for every connection
(:func:`resolve_checked`), so a name that resolves elsewhere later (DNS rebinding) is refused then.

Every change is made by an admin (``Permission.INTEGRATIONS``) and leaves an audit row; the audit
row, lists and messages never hold the secret, nor a URL's path past its first segment or its query
string (either may carry a token, as Slack's ``/services/T…/B…/<secret>`` does): :func:`shown_url`.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import DeliveryStatus, OutboxEvent, Post, WebhookDelivery, WebhookEndpoint
from db.session import rows_changed, writing
from review import audit
from review.auth import Actor, Permission, account_id, require_live
from review.config import Settings
from review.errors import ReviewError
from review.outbox import ALL_TYPES, EVENT_TYPES
from review.text import one_line

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION = 255
MAX_LISTED = 1000  # deliveries listed at once
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses that carry an IPv4 one in their last 32 bits
ALLOW_PRIVATE_HINT = "set WEBHOOK_ALLOW_PRIVATE=true only for a single-host install"
# Cloud metadata and host services outside the link-local range: AWS's IPv6 metadata, Alibaba's
# metadata, Azure's wireserver. They hand out credentials, so never, whatever WEBHOOK_ALLOW_PRIVATE says.
METADATA = frozenset(map(ipaddress.ip_address, ("fd00:ec2::254", "100.100.100.200", "168.63.129.16")))
SHOWN_SEGMENT = 32  # characters of a URL's first path segment shown; a longer one may be a token


class WebhookError(ReviewError):
    """A webhook request that cannot be done: a URL refused (with the reason), an unknown event
    type, endpoint or delivery."""


# --------------------------------------------------------------------------------------------
# Which addresses a webhook may reach


def _carried(ip: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses an IPv6 address tunnels to (mapped, 6to4, Teredo's server and client,
    NAT64); the address itself otherwise. A tunnelled address is judged by where it leads."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return [ip.ipv4_mapped]
        if ip.sixtofour is not None:
            return [ip.sixtofour]
        if ip.teredo is not None:
            return list(ip.teredo)
        if ip in NAT64:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return [ip]


def _kind(ip: IPAddress, allow_private: bool) -> str | None:
    """Why ``ip`` may not be reached ("link-local", "loopback", ...), or None if it may."""
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip in METADATA:
        return "cloud metadata"
    if ip.is_loopback:  # before "reserved": ::1 is in the reserved ::/8
        return None if allow_private else "loopback"
    if ip.is_reserved:
        return "reserved"
    if allow_private:
        return None
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"  # e.g. 100.64.0.0/10, carrier-grade NAT
    return None


def is_public(ip: IPAddress, allow_private: bool) -> bool:
    """Whether a webhook may be sent to ``ip``: never to multicast, unspecified, link-local,
    cloud metadata or reserved addresses; to loopback, private and other non-global ones only with
    ``allow_private``. Addresses tunnelled in IPv6 are judged by the IPv4 address they carry."""
    return all(_kind(inner, allow_private) is None for inner in _carried(ip))


def _refusal(host: str, ip: IPAddress, allow_private: bool) -> str | None:
    for inner in _carried(ip):
        kind = _kind(inner, allow_private)
        if kind is not None:
            shown = str(ip) if inner == ip else f"{ip} (which leads to {inner})"
            where = f"{host} resolves to {shown}" if host != str(ip) else shown
            hint = f"; {ALLOW_PRIVATE_HINT}" if _kind(inner, True) is None else " (never allowed)"
            return f"{one_line(where, 200)}, a {kind} address{hint}"
    return None


def resolve_checked(host: str, port: int, settings: Settings) -> list[IPAddress]:
    """The addresses ``host`` resolves to (IPv4 and IPv6), all of them allowed, in the resolver's
    order; WebhookError if it does not resolve or if ANY of them is not allowed (an attacker who
    controls the name controls which record a client picks). Used when an endpoint is registered
    and again for every connection the worker opens."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookError(f"cannot resolve {one_line(host, 200)}: {one_line(exc, 200)}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        ip = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])  # no IPv6 scope id
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise WebhookError(f"cannot resolve {one_line(host, 200)}: no address")
    for ip in addresses:
        refused = _refusal(host, ip, settings.webhook_allow_private)
        if refused is not None:
            raise WebhookError(f"webhook URL refused: {refused}")
    return addresses


def check_url(url: str, settings: Settings) -> str:
    """``url`` normalised (the host IDNA-encoded, default port dropped) if a webhook may be sent
    to it: http or https, a host, no user name or password, no fragment, at most 2,048
    characters, and every address its host resolves to allowed (:func:`resolve_checked`).
    Otherwise WebhookError with the reason."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(f"webhook URL refused: longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise WebhookError(f"webhook URL refused: not a URL ({one_line(exc, 200)})") from None
    if parsed.scheme not in ("http", "https"):
        raise WebhookError(
            f"webhook URL refused: only http and https URLs, not {one_line(parsed.scheme or 'none', 20)}"
        )
    if not parsed.raw_host:
        raise WebhookError("webhook URL refused: it names no host")
    if parsed.userinfo:
        raise WebhookError("webhook URL refused: no user name or password in it (they would be shown and logged)")
    if parsed.fragment:
        raise WebhookError("webhook URL refused: no #fragment in it (it is never sent)")
    host = parsed.raw_host.decode("ascii")
    resolve_checked(host, parsed.port or (443 if parsed.scheme == "https" else 80), settings)
    normal = str(parsed)
    if len(normal) > MAX_URL_LENGTH:
        raise WebhookError(f"webhook URL refused: longer than {MAX_URL_LENGTH} characters once encoded")
    return normal


def shown_url(url: str) -> str:
    """``url`` as audit rows, lists and logs show it: scheme, host, port and at most the first path
    segment, then "…" for what is left out (the rest of the path or the query may carry a token)."""
    parts = urlsplit(url)
    first, slash, more = parts.path.lstrip("/").partition("/")
    if len(first) > SHOWN_SEGMENT:
        return f"{parts.scheme}://{parts.netloc}/…"
    rest = "/…" if more else slash + ("?…" if parts.query else "")
    return f"{parts.scheme}://{parts.netloc}/{first}{rest}"


def database_now(session: Session) -> datetime:
    """Now by the database's clock on Postgres (workers on several hosts agree on lease and retry
    times whatever their own clocks say); this host's clock on SQLite, where every worker runs on
    this host. One reading per transaction: Postgres' ``now()`` is the transaction's start."""
    if session.get_bind().dialect.name == "postgresql":
        now = session.scalar(select(func.now()))
        assert now is not None
        return now
    return datetime.now(UTC)


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_event_types(types: list[str] | tuple[str, ...] | str | None) -> str:
    """Event types as stored: ``*`` for all (None, empty, or ``*`` among them), else the named
    types comma-separated in ``EVENT_TYPES`` order; WebhookError names an unknown one."""
    names = types.split(",") if isinstance(types, str) else list(types or [])
    wanted = {name.strip() for name in names if name.strip()}
    if not wanted or ALL_TYPES in wanted:
        return ALL_TYPES
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise WebhookError(
            f"unknown event type {', '.join(one_line(u, 64) for u in unknown)}; "
            f"the types are {', '.join(EVENT_TYPES)} (or * for all)"
        )
    return ",".join(t for t in EVENT_TYPES if t in wanted)


# --------------------------------------------------------------------------------------------
# Endpoints


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint as lists show it (never its secret), with its deliveries counted by status."""

    id: int
    url: str
    description: str
    event_types: tuple[str, ...]  # ("*",): every type
    active: bool
    disabled_reason: str | None
    created_at: datetime
    pending: int = 0
    delivered: int = 0
    dead: int = 0

    @property
    def encrypted(self) -> bool:
        return self.url.startswith("https://")


def _info(row: WebhookEndpoint, counts: dict[str, int] | None = None) -> EndpointInfo:
    counts = counts or {}
    return EndpointInfo(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=tuple(row.event_types.split(",")),
        active=row.active,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        pending=counts.get(DeliveryStatus.PENDING, 0),
        delivered=counts.get(DeliveryStatus.DELIVERED, 0),
        dead=counts.get(DeliveryStatus.DEAD, 0),
    )


def add_endpoint(
    sessions: sessionmaker[Session],
    actor: Actor,
    url: str,
    settings: Settings,
    *,
    event_types: list[str] | None = None,
    description: str = "",
) -> tuple[EndpointInfo, str]:
    """Register ``url`` for ``event_types`` (None or ``["*"]``: all): the stored endpoint and its
    signing secret, for the caller to show once. Decisions made from now on are delivered to it."""
    types = parse_event_types(event_types)
    description = description.strip()
    if len(description) > MAX_DESCRIPTION or not description.isprintable():
        raise WebhookError(f"a description is one line of at most {MAX_DESCRIPTION} characters")
    normal = check_url(url, settings)  # resolves the host: before the write transaction, not inside it
    secret = new_secret()
    with writing(sessions) as session:
        actor = require_live(session, actor, Permission.INTEGRATIONS)
        row = WebhookEndpoint(
            url=normal,
            description=description,
            event_types=types,
            secret=secret,
            active=True,
            created_by_id=account_id(actor),
            created_at=datetime.now(UTC),
        )
        session.add(row)
        session.flush()
        audit.record(
            session, actor, audit.Action.WEBHOOK_ADD, f"endpoint {row.id}", url=shown_url(normal), event_types=types
        )
        return _info(row), secret


def _counts(session: Session, endpoint_ids: list[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.endpoint_id.in_(endpoint_ids))
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    )
    out: dict[int, dict[str, int]] = {}
    for endpoint_id, status, count in rows:
        out.setdefault(endpoint_id, {})[status] = int(count)
    return out


def list_endpoints(sessions: sessionmaker[Session]) -> list[EndpointInfo]:
    """Every endpoint, oldest first, with its deliveries counted (pending, delivered, dead)."""
    with sessions() as session:
        rows = list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
        counts = _counts(session, [row.id for row in rows]) if rows else {}
        return [_info(row, counts.get(row.id)) for row in rows]


def _endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise WebhookError(f"there is no webhook endpoint {endpoint_id}; python -m review webhook list shows them")
    return row


def set_active(sessions: sessionmaker[Session], actor: Actor, endpoint_id: int, active: bool) -> EndpointInfo:
    """Enable or disable an endpoint. A disabled endpoint gets no new events, and its pending
    deliveries wait until it is enabled again; dead ones stay dead (redeliver them explicitly)."""
    with writing(sessions) as session:
        actor = require_live(session, actor, Permission.INTEGRATIONS)
        row = _endpoint(session, endpoint_id)
        if row.active != active:
            row.active = active
            row.disabled_reason = None if active else f"disabled by {one_line(actor.username, 64)}"
            audit.record(session, actor, audit.Action.WEBHOOK_CHANGE, f"endpoint {row.id}", active=active)
        session.flush()
        counts = _counts(session, [row.id])
        return _info(row, counts.get(row.id))


def rotate_secret(sessions: sessionmaker[Session], actor: Actor, endpoint_id: int) -> tuple[EndpointInfo, str]:
    """Give an endpoint a new signing secret (after a leak), for the caller to show once. From
    now on every attempt is signed with it: deliveries fail at a receiver that still checks the
    old one, and are retried on the schedule until it has the new one."""
    secret = new_secret()
    with writing(sessions) as session:
        actor = require_live(session, actor, Permission.INTEGRATIONS)
        row = _endpoint(session, endpoint_id)
        row.secret = secret
        audit.record(session, actor, audit.Action.WEBHOOK_CHANGE, f"endpoint {row.id}", secret="rotated")
        session.flush()
        return _info(row, _counts(session, [row.id]).get(row.id)), secret


# --------------------------------------------------------------------------------------------
# Deliveries


@dataclass(frozen=True)
class DeliveryInfo:
    """One event's delivery to one endpoint, as admins see it (never the payload or a response body)."""

    id: int
    endpoint_id: int
    event_uid: str  # the webhook-id header: the same on every attempt
    type: str
    seq: int
    source: str
    external_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    dead_at: datetime | None


def _status(status: str | None, allowed: tuple[str, ...]) -> str | None:
    if status is not None and status not in allowed:
        raise WebhookError(f"unknown delivery status {one_line(status, 20)!r}; use one of {', '.join(allowed)}")
    return status


def deliveries(
    sessions: sessionmaker[Session], *, endpoint_id: int | None = None, status: str | None = None, limit: int = 50
) -> list[DeliveryInfo]:
    """Deliveries, newest first; of one endpoint and in one status when given."""
    _status(status, tuple(DeliveryStatus))
    if not 1 <= limit <= MAX_LISTED:
        raise WebhookError(f"list between 1 and {MAX_LISTED} deliveries at a time")
    query = (
        select(WebhookDelivery, OutboxEvent.uid, OutboxEvent.type, Post.source, Post.external_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .join(Post, Post.id == WebhookDelivery.post_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    with sessions() as session:
        return [
            DeliveryInfo(
                id=d.id,
                endpoint_id=d.endpoint_id,
                event_uid=uid,
                type=kind,
                seq=d.seq,
                source=source,
                external_id=external_id,
                status=d.status,
                attempts=d.attempts,
                next_attempt_at=d.next_attempt_at,
                last_attempt_at=d.last_attempt_at,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                delivered_at=d.delivered_at,
                dead_at=d.dead_at,
            )
            for d, uid, kind, source, external_id in session.execute(query)
        ]


def redeliver(
    sessions: sessionmaker[Session],
    actor: Actor,
    *,
    delivery_ids: list[int] | None = None,
    endpoint_id: int | None = None,
    status: str = DeliveryStatus.DEAD,
) -> int:
    """Send deliveries again, with a fresh retry schedule and the same event (the same
    ``webhook-id``, so a receiver that has it already can tell): the ``delivery_ids``, or every
    delivery of ``endpoint_id`` in ``status`` (dead, or delivered: a receiver that lost data).
    A pending delivery a worker is sending now is left to it. Returns how many go out again."""
    if (delivery_ids is None) == (endpoint_id is None):
        raise WebhookError("redeliver either chosen deliveries or an endpoint's deliveries")
    _status(status, (DeliveryStatus.DEAD, DeliveryStatus.DELIVERED))
    details: dict[str, Any]  # the audit row's: which deliveries
    with writing(sessions) as session:
        actor = require_live(session, actor, Permission.INTEGRATIONS)
        now = database_now(session)  # the clock leases are kept by
        not_in_flight = or_(
            WebhookDelivery.status != DeliveryStatus.PENDING,
            WebhookDelivery.lease_expires_at.is_(None),
            WebhookDelivery.lease_expires_at < now,
        )
        if delivery_ids is not None:
            wanted = sorted(set(delivery_ids))
            if not wanted:
                raise WebhookError("name at least one delivery to send again")
            found = dict(
                session.execute(
                    select(WebhookDelivery.id, WebhookDelivery.endpoint_id).where(WebhookDelivery.id.in_(wanted))
                ).all()
            )
            missing = [i for i in wanted if i not in found]
            if missing:
                raise WebhookError(f"there is no delivery {', '.join(map(str, missing[:10]))}")
            chosen = and_(WebhookDelivery.id.in_(wanted), not_in_flight)
            endpoints = sorted(set(found.values()))
            subject, details = "deliveries", {"delivery_ids": wanted[:100]}
        else:
            assert endpoint_id is not None
            chosen = and_(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == status)
            endpoints = [endpoint_id]
            subject, details = f"endpoint {endpoint_id}", {"status": str(status)}
        for each in endpoints:
            row = _endpoint(session, each)
            if not row.active:
                raise WebhookError(
                    f"webhook endpoint {each} is disabled ({one_line(row.disabled_reason, 80)}): "
                    f"enable it first, then redeliver"
                )
        count = rows_changed(
            session,
            update(WebhookDelivery)
            .where(chosen)
            .values(
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                lease_expires_at=None,
                delivered_at=None,
                dead_at=None,
            )
            .execution_options(synchronize_session=False),
        )
        audit.record(session, actor, audit.Action.WEBHOOK_REDELIVER, subject, count=count, **details)
    return count
