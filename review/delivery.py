"""The delivery worker: sends the outbox's pending deliveries (review/outbox.py writes them with
each decision) to their webhook endpoints, signed per Standard Webhooks, and retries the failed.

A round: lease a batch of due deliveries (:func:`lease_deliveries`), send them concurrently over
one keep-alive HTTP client, then record every outcome in one transaction, each row only if this
worker still holds its lease. The HTTP requests happen outside any database transaction.

- **Time**: ``WEBHOOK_TIMEOUT_SECONDS`` bounds a whole request (connecting, sending, the answer's
  headers), however slowly a receiver drips its bytes: every read and write of the connection is
  given only the time left before the request's deadline (:class:`_DeadlineStream`); connecting
  gets at most ``CONNECT_TIMEOUT`` of it. So a round lasts at most that long past its last start,
  and a request starts only if its answer and the recording can come before the lease runs out.
  Lease and retry times are the database's clock on Postgres (``review.webhooks.database_now``),
  so workers on hosts whose clocks differ do not take each other's live leases.

- **Several workers** share the outbox by leases, as the scoring worker shares posts
  (``review/scoring.py`` ``lease_batch``): on Postgres the free rows are picked ``FOR UPDATE
  SKIP LOCKED``, on SQLite under the write lock; a worker that dies (even ``kill -9``) leaves its
  leases to run out, and another sends those deliveries again.
- **At least once, in order per post**: a delivery is sent until its endpoint answers 2xx; the
  ``webhook-id`` header is the event's ``uid``, the same on every attempt and every worker, so a
  receiver drops repeats. Only a post's oldest pending event for an endpoint is leased, so one
  post's events arrive in ``seq`` order; an event that goes dead stops holding the later ones.
- **Retries**: any answer but 2xx (3xx too: redirects are never followed, they would lead past
  the address check), a timeout or a refused connection is a failure; the next attempt waits the
  ``WEBHOOK_RETRY_SCHEDULE`` step for that attempt, lengthened by up to 25 % of random jitter, or
  longer when a 429 or 503 says ``Retry-After``. After the last step the delivery is dead (an
  admin may redeliver it: review/webhooks.py). 410 Gone makes it dead at once and disables the
  endpoint.
- **Addresses**: every connection goes to an address :func:`review.webhooks.resolve_checked`
  allows, resolved when it is opened (a custom network backend), so a name that later resolves
  to the desk's own network (DNS rebinding) is refused; proxies from the environment are ignored.
- **What is kept**: the status code and a one-line error (never the response body, which is read
  up to 4 KiB only to keep the connection, nor the secret, nor the payload).

A database outage is waited for (``db.session.retry_transient``), as the scoring worker does.
``python -m review deliver`` runs it; ``python -m review api --deliver`` runs it in a thread of
the API process (:func:`start_in_thread`).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, TypeVar

import httpcore2
import httpx2 as httpx
from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from standardwebhooks import Webhook

from db.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint
from db.session import lease_rows, retry_transient, worker_name, writing
from review.config import Settings
from review.text import one_line
from review.webhooks import WebhookError, database_now, resolve_checked

log = logging.getLogger(__name__)
T = TypeVar("T")

DELIVERY_LEASE = timedelta(seconds=60)
CONCURRENCY = 16  # requests in flight at once
RESPONSE_CAP = 4096  # bytes of a response body read (to reuse the connection); never stored
RETRY_AFTER_CAP = 24 * 3600.0  # seconds: a receiver's Retry-After is honoured up to a day
JITTER = 0.25  # a retry's wait is lengthened by up to this share, at random
CONNECT_TIMEOUT = 5.0  # seconds at most of a request's time spent connecting (TCP and TLS)
RECORD_MARGIN = 0.5  # seconds kept between a request's deadline and its lease's end, to record the outcome
STOP_PATIENCE = 30.0  # seconds a stopping worker thread gets, past its requests' timeout, to record them
WRITE_CHUNK = 16_384  # bytes written at a time, each with the time left
GONE = "410 Gone"
USER_AGENT = "review-desk-webhooks/1"


# --------------------------------------------------------------------------------------------
# Leases


def _free(now: datetime, worker: str) -> ColumnElement[bool]:
    """Deliveries a worker may take now: pending, due, not leased by another live worker, the
    oldest pending event of their post for their endpoint, to an active endpoint."""
    earlier = aliased(WebhookDelivery)
    return and_(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at <= now,
        or_(
            WebhookDelivery.lease_expires_at.is_(None),
            WebhookDelivery.lease_expires_at < now,
            WebhookDelivery.lease_owner == worker,
        ),
        # the head: a correlated MIN, which Postgres runs per row as an index lookup (a NOT EXISTS
        # may be planned as an anti-join that compares every pair when statistics are stale)
        WebhookDelivery.seq
        == select(func.min(earlier.seq))
        .where(
            earlier.endpoint_id == WebhookDelivery.endpoint_id,
            earlier.post_id == WebhookDelivery.post_id,
            earlier.status == DeliveryStatus.PENDING,
        )
        .scalar_subquery(),
        exists().where(WebhookEndpoint.id == WebhookDelivery.endpoint_id, WebhookEndpoint.active),
    )


def lease_deliveries(
    sessions: sessionmaker[Session], worker: str, limit: int, lease: timedelta = DELIVERY_LEASE
) -> list[int]:
    """Lease up to ``limit`` due deliveries (oldest event first) for ``lease``; their ids. Only
    each post's head per endpoint, so a batch never holds two events of one post for one endpoint."""
    with sessions() as session:  # a read first: an idle worker takes no write lock
        if session.scalar(select(WebhookDelivery.id).where(_free(database_now(session), worker)).limit(1)) is None:
            return []
    with writing(sessions) as session:
        now = database_now(session)
        free = _free(now, worker)
        return lease_rows(
            session,
            WebhookDelivery.id,
            free,
            WebhookDelivery.seq,
            limit,
            lease_owner=worker,
            lease_expires_at=now + lease,
        )


@dataclass(frozen=True)
class Job:
    """One leased delivery: what sending it needs."""

    id: int
    endpoint_id: int
    url: str
    secret: str
    uid: str  # the webhook-id
    payload: str  # the exact JSON text stored with the event
    attempts: int  # before this one


def _jobs(sessions: sessionmaker[Session], worker: str, ids: list[int]) -> list[Job]:
    """The deliveries ``ids`` that this worker still holds, oldest event first."""
    if not ids:
        return []
    with sessions() as session:
        rows = session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.endpoint_id,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
                OutboxEvent.uid,
                OutboxEvent.payload,
                WebhookDelivery.attempts,
            )
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.id.in_(ids), WebhookDelivery.lease_owner == worker)
            .order_by(WebhookDelivery.seq)
        )
        return [Job(*row) for row in rows]


# --------------------------------------------------------------------------------------------
# Sending


_deadline: ContextVar[float | None] = ContextVar("webhook_deadline", default=None)  # time.monotonic()


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before this thread's request deadline (:func:`send` sets
    it); ``expired`` raised once it has passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the webhook request's time is up")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    """A connection whose every read and write ends by the deadline of the request using it, so a
    receiver that answers a byte at a time cannot hold a request past ``WEBHOOK_TIMEOUT_SECONDS``.
    (httpcore's timeouts are per read and per write.)"""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK):
            self._inner.write(buffer[start : start + WRITE_CHUNK], _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        # the handshake as a whole is bounded by its timeout (CPython's ssl keeps one deadline for it)
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore2.SyncBackend):
    """Opens each connection to an address the webhook rule allows, resolved at that moment:
    the checked address is the one connected to (no second lookup an attacker could answer), as
    a :class:`_DeadlineStream`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        addresses = resolve_checked(host, port, self.settings)  # WebhookError if any is not allowed
        for i, address in enumerate(addresses):
            try:
                stream = super().connect_tcp(
                    str(address), port, _left(timeout, httpcore2.ConnectTimeout), local_address, socket_options
                )
                return _DeadlineStream(stream)
            except httpcore2.ConnectError:
                if i == len(addresses) - 1:
                    raise
        raise AssertionError("unreachable: resolve_checked returns at least one address")


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose connections go through :class:`_CheckedBackend`.
    (httpx2 2.17 takes no network backend; its pool is replaced by one that does.)"""

    def __init__(self, settings: Settings, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(settings),
        )


def make_client(settings: Settings) -> httpx.Client:
    """The worker's one HTTP client: keep-alive, no redirects, no proxies from the environment,
    connections only to allowed addresses, connecting in at most ``CONNECT_TIMEOUT`` (:func:`send`
    bounds the whole request)."""
    limits = httpx.Limits(max_connections=4 * CONCURRENCY, max_keepalive_connections=2 * CONCURRENCY)
    total = settings.webhook_timeout_seconds
    return httpx.Client(
        transport=_CheckedTransport(settings, limits),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(total, connect=min(CONNECT_TIMEOUT, total)),
        headers={"user-agent": USER_AGENT},
    )


@dataclass(frozen=True)
class Attempt:
    """What one send of a job came to. ``sent`` is False when it was not tried (its lease would
    have run out before the answer could come, or the worker is stopping)."""

    job: Job
    at: datetime
    status_code: int | None = None
    error: str | None = None  # one line; never the response body
    retry_after: float | None = None  # seconds, from a 429 or 503
    sent: bool = True

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now, capped; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = (
            float(value) if value.isdigit() else (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        )
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def headers_for(job: Job, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: the event's id, the attempt's time, the signature."""
    return {
        "webhook-id": job.uid,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": Webhook(job.secret).sign(job.uid, at, job.payload),
        "content-type": "application/json",
    }


def send(client: httpx.Client, job: Job, settings: Settings, lease_ends: float | None = None) -> Attempt:
    """POST ``job``'s stored payload, exactly as stored, signed for this attempt, within
    ``WEBHOOK_TIMEOUT_SECONDS`` in all. Never raises: every failure is an :class:`Attempt` with its
    one-line reason. Not tried when the answer, and ``RECORD_MARGIN`` to record it, could come
    after ``lease_ends`` (a ``time.monotonic()`` value)."""
    at = datetime.now(UTC)
    started = time.monotonic()
    deadline = started + settings.webhook_timeout_seconds
    if lease_ends is not None and deadline + RECORD_MARGIN >= lease_ends:
        return Attempt(job, at, sent=False)
    bounded = _deadline.set(deadline)
    try:
        body = job.payload.encode("utf-8")
        with client.stream("POST", job.url, content=body, headers=headers_for(job, at)) as response:
            code = response.status_code
            try:
                read = 0
                for chunk in response.iter_raw():  # up to the cap, to leave the connection reusable
                    read += len(chunk)
                    if read > RESPONSE_CAP:
                        break
            except httpx.TimeoutException:
                pass  # the answer came; only its body is late (the connection is closed, not reused)
            if 200 <= code < 300:
                return Attempt(job, at, code)
            retry_after = _retry_after(response.headers.get("retry-after")) if code in (429, 503) else None
            reason = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
            return Attempt(job, at, code, reason, retry_after)
    except WebhookError as exc:  # the address check at connect time
        return Attempt(job, at, error=one_line(exc, 400))
    except httpx.TimeoutException:
        return Attempt(job, at, error=f"timed out after {settings.webhook_timeout_seconds:g} s")
    except httpx.ConnectError as exc:
        return Attempt(job, at, error=one_line(f"could not connect: {exc}", 400))
    except httpx.HTTPError as exc:
        return Attempt(job, at, error=one_line(f"{type(exc).__name__}: {exc}", 400))
    except Exception as exc:  # a bug: this delivery fails with its reason, the others go on
        log.exception("webhook delivery %d: unexpected error", job.id)
        return Attempt(job, at, error=one_line(f"internal error ({type(exc).__name__})", 400))
    finally:
        _deadline.reset(bounded)


def next_attempt_in(attempts: int, settings: Settings, retry_after: float | None = None) -> float | None:
    """Seconds to wait after the ``attempts``-th failed attempt; None when the schedule is spent (dead)."""
    delays = settings.retry_delays()
    if attempts > len(delays):
        return None
    wait = delays[attempts - 1] * (1 + random.uniform(0, JITTER))
    return max(wait, retry_after) if retry_after is not None else wait


# --------------------------------------------------------------------------------------------
# Recording outcomes


@dataclass
class DeliveryStats:
    delivered: int = 0
    retrying: int = 0  # failed, to be tried again
    dead: int = 0
    not_sent: int = 0  # leased but not tried (the lease would have run out)
    lost_leases: int = 0  # sent, but another worker had taken the lease meanwhile: not recorded
    leased: int = 0
    database_waits: int = 0

    def add(self, other: DeliveryStats) -> None:
        for each in fields(self):
            setattr(self, each.name, getattr(self, each.name) + getattr(other, each.name))

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered", f"{self.retrying} failed (to retry)", f"{self.dead} dead"]
        if self.lost_leases:
            parts.append(f"{self.lost_leases} lost to another worker")
        return ", ".join(parts)


def _held(worker: str, ids: list[int]) -> ColumnElement[bool]:
    return and_(
        WebhookDelivery.id.in_(ids),
        WebhookDelivery.lease_owner == worker,
        WebhookDelivery.status == DeliveryStatus.PENDING,
    )


def _release_all(session: Session, worker: str, ids: list[int], **values: object) -> int:
    """One UPDATE for many held deliveries (the batch's successes, its untried): how many were still held."""
    if not ids:
        return 0
    statement = (
        update(WebhookDelivery)
        .where(_held(worker, ids))
        .values(lease_owner=None, lease_expires_at=None, **values)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return len(session.scalars(statement).all())


def _finish(sessions: sessionmaker[Session], worker: str, attempts: list[Attempt], settings: Settings) -> DeliveryStats:
    """Record a batch's outcomes in one transaction; each row only while this worker holds it.
    Successes are one statement per status code (the common case, kept cheap for big backlogs)."""
    stats = DeliveryStats(leased=len(attempts))
    failures: list[tuple[Attempt, float | None]] = []
    with writing(sessions) as session:
        now = database_now(session)
        untried = [a.job.id for a in attempts if not a.sent]
        stats.not_sent = _release_all(session, worker, untried)
        for code in sorted({a.status_code for a in attempts if a.sent and a.ok}, key=str):
            ok = [a for a in attempts if a.sent and a.ok and a.status_code == code]
            stats.delivered += _release_all(
                session, worker, [a.job.id for a in ok],
                status=DeliveryStatus.DELIVERED, delivered_at=now, attempts=WebhookDelivery.attempts + 1,
                last_attempt_at=case({a.job.id: a.at for a in ok}, value=WebhookDelivery.id),
                last_status_code=code, last_error=None,
            )  # fmt: skip
        for attempt in attempts:
            if not attempt.sent or attempt.ok:
                continue
            job = attempt.job
            values: dict[str, object] = {
                "attempts": job.attempts + 1,
                "last_attempt_at": attempt.at,
                "last_status_code": attempt.status_code,
                "last_error": attempt.error,
            }
            wait = None if attempt.gone else next_attempt_in(job.attempts + 1, settings, attempt.retry_after)
            if wait is None:
                values.update(status=DeliveryStatus.DEAD, dead_at=now)
            else:
                values.update(next_attempt_at=now + timedelta(seconds=wait))
            if not _release_all(session, worker, [job.id], **values):
                continue
            failures.append((attempt, wait))
            stats.dead += wait is None
            stats.retrying += wait is not None
            if attempt.gone:
                session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == job.endpoint_id, WebhookEndpoint.active)
                    .values(active=False, disabled_reason=GONE)
                    .execution_options(synchronize_session=False)
                )
        stats.lost_leases = len(attempts) - stats.not_sent - stats.delivered - len(failures)
    for attempt, wait in failures:  # after the commit: the log says what was recorded
        job = attempt.job
        then = (
            f"dead, endpoint disabled ({GONE})"
            if attempt.gone
            else "dead"
            if wait is None
            else f"next try in {wait:.1f} s"
        )
        log.warning(
            "webhook delivery %d (event %s) to endpoint %d failed, attempt %d: %s; %s",
            job.id, job.uid, job.endpoint_id, job.attempts + 1, attempt.error, then,
        )  # fmt: skip
    return stats


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class Worker:
    """One delivery worker: its name (its leases' owner), batch size, lease and patience with the database."""

    sessions: sessionmaker[Session]
    settings: Settings
    batch: int = 200
    lease: timedelta = DELIVERY_LEASE
    poll_seconds: float = 0.2  # the pause when nothing is due
    retry_wait: float = 300.0  # seconds in all to wait for an unreachable database before giving up
    name: str = field(default_factory=worker_name)
    _waits: int = field(default=0, init=False, repr=False)  # database waits in the current round

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 10_000:
            raise WebhookError("a delivery batch is 1 to 10,000 deliveries")
        if self.poll_seconds <= 0:
            raise WebhookError("the pause between polls must be more than 0 seconds")
        if self.lease.total_seconds() <= self.settings.webhook_timeout_seconds + RECORD_MARGIN:
            raise WebhookError(
                f"the delivery lease ({self.lease.total_seconds():g} s) must be longer than "
                f"WEBHOOK_TIMEOUT_SECONDS ({self.settings.webhook_timeout_seconds:g} s) + {RECORD_MARGIN:g} s"
            )

    def _waiting(self, _reason: str, _seconds: float) -> None:
        self._waits += 1

    def _db(self, step: Callable[[], T]) -> T:
        return retry_transient(step, max_wait=self.retry_wait, on_wait=self._waiting)

    def round(
        self, client: httpx.Client, pool: ThreadPoolExecutor, stop: threading.Event | None = None
    ) -> DeliveryStats:
        """Lease a batch, send it, record the outcomes; empty stats when nothing was due. Once
        ``stop`` is set, the requests not started yet are not sent (their leases are released)."""
        self._waits = 0

        def lease_and_load() -> list[Job]:
            return _jobs(self.sessions, self.name, lease_deliveries(self.sessions, self.name, self.batch, self.lease))

        leased_at = time.monotonic()
        jobs = self._db(lease_and_load)
        if not jobs:
            return DeliveryStats(database_waits=self._waits)
        lease_ends = leased_at + self.lease.total_seconds()  # by this host's monotonic clock, before the lease began

        def attempt(job: Job) -> Attempt:
            if stop is not None and stop.is_set():
                return Attempt(job, datetime.now(UTC), sent=False)
            return send(client, job, self.settings, lease_ends)

        attempts = list(pool.map(attempt, jobs))
        stats = self._db(partial(_finish, self.sessions, self.name, attempts, self.settings))
        stats.database_waits = self._waits
        return stats

    def run(
        self,
        *,
        once: bool = False,
        stop: threading.Event | None = None,
        on_round: Callable[[DeliveryStats], None] | None = None,
    ) -> DeliveryStats:
        """Deliver until ``stop`` is set (or, with ``once``, until nothing is due); pause
        ``poll_seconds`` when nothing is due. Returns the totals."""
        stop = stop or threading.Event()
        total = DeliveryStats()
        with make_client(self.settings) as client, ThreadPoolExecutor(CONCURRENCY, "webhook") as pool:
            while not stop.is_set():
                stats = self.round(client, pool, stop)
                total.add(stats)
                if stats.leased and on_round is not None:
                    on_round(stats)
                if not stats.leased:
                    if once:
                        break
                    stop.wait(self.poll_seconds)
        return total


def run(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    worker: str | None = None,
    batch: int = 200,
    lease_seconds: float = DELIVERY_LEASE.total_seconds(),
    poll_seconds: float = 0.2,
    once: bool = False,
    stop: threading.Event | None = None,
    retry_wait: float = 300.0,
    on_round: Callable[[DeliveryStats], None] | None = None,
) -> DeliveryStats:
    """Run a delivery worker (see :class:`Worker`) until ``stop`` is set, or with ``once`` until
    nothing is due; ``on_round`` sees each round that leased something."""
    lease = timedelta(seconds=lease_seconds)
    delivering = Worker(sessions, settings, batch, lease, poll_seconds, retry_wait, worker or worker_name())
    return delivering.run(once=once, stop=stop, on_round=on_round)


@dataclass
class DeliveryThread:
    """A delivery worker running in a thread of this process (the API's ``--deliver``)."""

    thread: threading.Thread
    stopping: threading.Event
    patience: float  # seconds stop() waits: the requests in flight, and time to record them

    def stop(self) -> None:
        """Ask it to stop: the requests in flight end (within ``WEBHOOK_TIMEOUT_SECONDS``) and are
        recorded, the rest of the round is released untried. Waits for that up to ``patience``
        seconds (a database that does not answer is not waited for longer)."""
        self.stopping.set()
        self.thread.join(self.patience)


def start_in_thread(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    batch: int = 200,
    lease_seconds: float = DELIVERY_LEASE.total_seconds(),
    poll_seconds: float = 0.2,
) -> DeliveryThread:
    """Start a delivery worker in a daemon thread of this process. It waits out database outages
    however long they last, and logs (rather than raises) an error that stops it. Bad options
    raise here, in the caller's thread."""
    worker = Worker(sessions, settings, batch, timedelta(seconds=lease_seconds), poll_seconds, retry_wait=math.inf)
    stopping = threading.Event()

    def target() -> None:
        try:
            worker.run(stop=stopping)
        except Exception:
            log.exception("the webhook delivery worker stopped")

    thread = threading.Thread(target=target, name="webhook-delivery", daemon=True)
    thread.start()
    return DeliveryThread(thread, stopping, settings.webhook_timeout_seconds + STOP_PATIENCE)
