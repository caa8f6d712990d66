"""The transactional outbox: what the desk tells the platform, written in the same transaction as
the review event it tells of, so that no decision is stored without its outgoing event or the
reverse.

:func:`enqueue` is called by :func:`review.events.write` for the actions a platform acts on
(:data:`TYPES`: confirm, overturn, escalate, an undo's reopen, a re-queue by reports). It stores
one ``outbox_event`` (the payload as the exact JSON text that is signed and sent; the feed's
position ``seq``) and one ``webhook_delivery`` per active endpoint that takes that type, for the
delivery worker (review/delivery.py). Claims, releases and skips tell the platform nothing.

Order: ``seq`` comes from the one-row ``outbox_clock``, taken under a row lock held to commit, so
events commit in ``seq`` order and a platform polling ``seq > cursor`` (``GET /v1/decisions``)
never skips one that commits late (an id sequence hands out numbers at insert, not at commit).
Writers take the clock after their post's lock and no post lock after it: no deadlock.

The payload carries no post content (no text, author or media) and no notes: a purge
(review/purge.py) need not chase sent webhooks, which cannot be recalled. It does carry the
policy action (``prompts/policy.toml``) the label calls for, fixed when the event is written.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.orm import Session

from db.models import (
    DeliveryStatus,
    EventAction,
    OutboxClock,
    OutboxEvent,
    Post,
    PostStatus,
    ReviewEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from review.policy import load_policy

# review_event.action → the outgoing event's type
TYPES = {
    EventAction.CONFIRM: "decision.confirmed",
    EventAction.OVERTURN: "decision.overturned",
    EventAction.ESCALATE: "decision.escalated",
    EventAction.REOPEN: "decision.undone",
    EventAction.REQUEUE: "post.requeued",
}
EVENT_TYPES = tuple(TYPES.values())
ALL_TYPES = "*"  # an endpoint's event_types: every type


def _serialise(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _label(event: ReviewEvent) -> dict[str, Any] | None:
    if event.label_violation is None:
        return None
    return {"violation": event.label_violation, "category": event.label_category, "severity": event.label_severity}


# A restored desk is older than what its platforms have seen: they hold feed cursors and "last
# applied seq per post" from events handed out after the backup was taken. A restore moves the
# clock this far ahead, so that every new event is newer than those, however many there were.
RESTORE_GAP = 1_000_000_000


def skip_ahead(session: Session) -> None:
    """Move the feed's clock :data:`RESTORE_GAP` ahead (after a restore from a backup)."""
    session.execute(
        update(OutboxClock)
        .where(OutboxClock.id == 1)
        .values(seq=OutboxClock.seq + RESTORE_GAP)
        .execution_options(synchronize_session=False)
    )


def _next_seq(session: Session) -> int:
    """The next feed position, under the clock row's lock (held until this transaction ends)."""
    seq = session.scalar(
        update(OutboxClock)
        .where(OutboxClock.id == 1)
        .values(seq=OutboxClock.seq + 1)
        .returning(OutboxClock.seq)
        .execution_options(synchronize_session=False)
    )
    if seq is None:  # a database made without migration 0009's row
        raise RuntimeError("outbox_clock has no row; run python -m review db upgrade")
    return int(seq)


def enqueue(session: Session, event: ReviewEvent, status_after: str) -> OutboxEvent | None:
    """Write the outgoing event for ``event`` (flushed, in the caller's transaction, which holds
    its post) and its deliveries; None for an action the platform is not told of."""
    kind = TYPES.get(EventAction(event.action))
    if kind is None:
        return None
    undone = session.get(ReviewEvent, event.undoes_id) if event.undoes_id is not None else None
    if undone is not None and undone.action not in TYPES:
        return None  # the undo of a skip: the platform never heard of the skip
    post = session.execute(select(Post.source, Post.external_id).where(Post.id == event.post_id)).one()
    policy = load_policy()
    label = _label(event)
    undoes = None
    if undone is not None:
        sent = session.scalar(select(OutboxEvent.uid).where(OutboxEvent.review_event_id == undone.id))
        undoes = {
            "event_id": sent,  # None: the undone decision was taken before the desk had an outbox (0009)
            "action": undone.action,
            "policy_action": _action(policy, undone),
        }
    seq = _next_seq(session)
    uid = f"evt_{uuid.uuid4().hex}"
    stamp = event.created_at.isoformat().replace("+00:00", "Z")
    payload = {
        "type": kind,
        "timestamp": stamp,
        "data": {
            "event_id": uid,
            "seq": seq,
            "post": {"source": post.source, "external_id": post.external_id, "status": status_after},
            "action": event.action,
            # a platform that acts only on final decisions never acts on a label a second reviewer may change
            "final": event.action in (EventAction.CONFIRM, EventAction.OVERTURN) and status_after == PostStatus.DECIDED,
            "label": label,
            "policy_action": _action(policy, event),
            "policy_version": policy.version,
            "second_review": bool(event.second_review),
            "bulk_id": event.bulk_id,
            "undoes": undoes,
        },
    }
    row = OutboxEvent(
        uid=uid,
        seq=seq,
        review_event_id=event.id,
        post_id=event.post_id,
        type=kind,
        created_at=event.created_at,
        payload=_serialise(payload),
    )
    session.add(row)
    session.flush()
    _fan_out(session, row)
    return row


def _action(policy: Any, event: ReviewEvent) -> str | None:
    """The policy action a decision's label calls for; None for events that carry no label."""
    if event.action not in (EventAction.CONFIRM, EventAction.OVERTURN):
        return None
    return str(policy.action_for(event.label_violation, event.label_category, event.label_severity))


def _fan_out(session: Session, event: OutboxEvent) -> None:
    """One pending delivery per active endpoint that takes ``event``'s type, in one statement."""
    listed = literal(",") + WebhookEndpoint.event_types + literal(",")
    wanted = (WebhookEndpoint.event_types == ALL_TYPES) | listed.like(f"%,{event.type},%")
    endpoints = select(
        literal(event.id),
        WebhookEndpoint.id,
        literal(event.post_id),
        literal(event.seq),
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        literal(event.created_at, WebhookDelivery.next_attempt_at.type),
    ).where(WebhookEndpoint.active, wanted)
    session.execute(
        insert(WebhookDelivery).from_select(
            ["event_id", "endpoint_id", "post_id", "seq", "status", "attempts", "next_attempt_at"], endpoints
        )
    )


def payload_of(row: OutboxEvent) -> dict[str, Any]:
    return dict(json.loads(row.payload))


def feed(session: Session, after: int, limit: int) -> list[OutboxEvent]:
    """Outgoing events after feed position ``after``, oldest first: the keyset feed."""
    return list(
        session.scalars(select(OutboxEvent).where(OutboxEvent.seq > after).order_by(OutboxEvent.seq).limit(limit))
    )


def post_events(session: Session, post_id: int) -> list[OutboxEvent]:
    """A post's outgoing events, oldest first."""
    return list(session.scalars(select(OutboxEvent).where(OutboxEvent.post_id == post_id).order_by(OutboxEvent.seq)))
