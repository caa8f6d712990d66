"""review/delivery.py against a real receiver (pytest-httpserver on 127.0.0.1) that verifies every
signature with the standardwebhooks package: decisions made through review.decisions arrive
signed and in order per post; failures are retried with backoff, then dead; 410 disables the
endpoint; redirects are not followed; addresses are checked again when sending; two workers do
not send a leased delivery twice; a worker killed with SIGKILL mid-batch loses nothing; a receiver
that drips its answer is cut off at the timeout without holding the others; the API's delivery
worker leaves no lease behind on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from standardwebhooks import Webhook
from werkzeug import Request, Response

from db.models import OutboxEvent, WebhookDelivery
from review import delivery, webhooks
from review.auth import OPERATOR
from review.config import Settings
from review.decisions import Label, decide, undo
from review.desk import Desk
from tests.conftest import REPO, free_port, point_cli_at, subprocess_env, wait_for
from tests.factories import claim_and_decide, spam_queue, staff

logging.getLogger("werkzeug").setLevel(logging.WARNING)


@dataclass
class Hit:
    uid: str  # the webhook-id header
    body: bytes
    payload: dict
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived


@dataclass
class Receiver:
    """A webhook receiver: verifies the signature of every request (a bad one is a handler error,
    raised at teardown), records it, and answers the next of ``answers`` (then 204), after ``delay``."""

    server: HTTPServer
    secret: str = ""
    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    arrivals: int = 0  # requests received, answered or not yet
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.server.url_for("/hook")

    def handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        with self.lock:
            self.arrivals += 1
        body = request.get_data()
        payload = Webhook(self.secret).verify(body, dict(request.headers))
        assert request.headers["content-type"] == "application/json"
        time.sleep(self.delay)
        with self.lock:
            status = self.answers.pop(0) if self.answers else 204
            self.hits.append(Hit(request.headers["webhook-id"], body, payload, status, arrived))
        location = {"location": self.server.url_for("/elsewhere")} if 300 <= status < 400 else {}
        return Response("a body the worker must not keep", status=status, headers=location)

    def delivered(self) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if 200 <= hit.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    got = Receiver(server)
    server.expect_request("/hook", method="POST").respond_with_handler(got.handle)
    yield got
    if server.is_running():
        server.stop()
    server.check_handler_errors()  # every signature verified


@pytest.fixture
def dripper() -> Iterator[str]:
    """The URL of a receiver that answers a byte every 0.2 s and never finishes its headers: each
    read gets a byte well within any per-read timeout, so only a deadline for the whole request ends it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stopping = threading.Event()

    def drip(connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                    if stopping.is_set():
                        return
                    connection.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                return  # the worker hung up

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stopping.set()
    serving.join(5)
    server.close()


def fast(desk: Desk, **overrides: object) -> Settings:
    """Settings for these tests: loopback allowed, retries after 0.2 s and 0.5 s, a 2 s timeout."""
    values: dict[str, object] = {
        "webhook_allow_private": True,
        "webhook_retry_schedule": "0.2,0.5",
        "webhook_timeout_seconds": 2.0,
    }
    return desk.settings.with_overrides(**{**values, **overrides})


def register(desk: Desk, receiver: Receiver, settings: Settings, url: str | None = None) -> int:
    info, receiver.secret = webhooks.add_endpoint(desk.sessions, OPERATOR, url or receiver.url, settings)
    return info.id


def confirmed(desk: Desk, n: int) -> list[int]:
    """``n`` queued posts, each confirmed by a moderator through review.decisions."""
    ann = staff(desk)["ann"]
    ids = spam_queue(desk, n)
    for post_id in ids:
        claim_and_decide(desk, ann, post_id, "confirm")
    return ids


def rows(desk: Desk) -> list[WebhookDelivery]:
    with desk.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def outbox(desk: Desk) -> dict[str, OutboxEvent]:
    with desk.sessions() as session:
        return {e.uid: e for e in session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))}


def pending(desk: Desk) -> int:
    return sum(row.status == "pending" for row in rows(desk))


def drain(desk: Desk, settings: Settings, timeout: float = 15.0) -> None:
    """Run a worker in a thread (as ``api --deliver`` does) until no delivery is pending."""
    worker = delivery.start_in_thread(desk.sessions, settings, poll_seconds=0.05)
    try:
        wait_for(lambda: pending(desk) == 0, timeout)
    finally:
        worker.stop()
    assert not worker.thread.is_alive()


def test_decisions_arrive_signed_once_each_and_in_order_per_post(desk: Desk, receiver: Receiver) -> None:
    settings = fast(desk)
    register(desk, receiver, settings)
    ann = staff(desk)["ann"]
    posts = spam_queue(desk, 3)
    for post_id in posts:  # three events per post: confirmed, undone, overturned
        event = claim_and_decide(desk, ann, post_id, "confirm")
        undo(desk.sessions, ann, event.id)
        decide(desk.sessions, ann, post_id, "overturn", label=Label(False, "none", 0))
    drain(desk, settings)

    events = outbox(desk)
    hits = receiver.delivered()
    assert sorted(hit.uid for hit in hits) == sorted(events) and len(events) == 9  # each once
    for hit in hits:
        assert hit.body == events[hit.uid].payload.encode()  # the stored bytes, exactly
        assert hit.payload["data"]["event_id"] == hit.uid
    for post_id in posts:
        arrived = [hit.payload for hit in hits if events[hit.uid].post_id == post_id]
        assert [p["type"] for p in arrived] == ["decision.confirmed", "decision.undone", "decision.overturned"]
        assert [p["data"]["seq"] for p in arrived] == sorted(p["data"]["seq"] for p in arrived)
    assert {(row.status, row.attempts, row.last_status_code, row.lease_owner) for row in rows(desk)} == {
        ("delivered", 1, 204, None)
    }


def test_a_failing_receiver_is_retried_with_backoff(sqlite_desk: Desk, receiver: Receiver) -> None:
    settings = fast(sqlite_desk, webhook_retry_schedule="0.5,0.5")
    register(sqlite_desk, receiver, settings)
    receiver.answers = [500, 500]
    confirmed(sqlite_desk, 1)

    delivery.run(sqlite_desk.sessions, settings, once=True)  # one attempt, then nothing is due
    (row,) = rows(sqlite_desk)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("pending", 1, 500, "HTTP 500")
    assert row.next_attempt_at > datetime.now(UTC) and row.lease_owner is None

    drain(sqlite_desk, settings)
    (row,) = rows(sqlite_desk)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 3, 204, None)
    hits = receiver.hits
    assert [hit.status for hit in hits] == [500, 500, 204] and len({hit.uid for hit in hits}) == 1  # one id
    assert hits[1].at - hits[0].at >= 0.5 and hits[2].at - hits[1].at >= 0.5  # the schedule's waits


def test_every_event_arrives_once_after_the_receiver_comes_back(desk: Desk, receiver: Receiver) -> None:
    settings = fast(desk)
    register(desk, receiver, settings)
    receiver.server.stop()
    confirmed(desk, 3)

    delivery.run(desk.sessions, settings, once=True)
    assert all(r.attempts == 1 and r.last_error.startswith("could not connect") for r in rows(desk))
    assert all(r.status == "pending" and r.last_status_code is None for r in rows(desk))

    receiver.server.start()  # the same port again
    drain(desk, settings)
    assert sorted(hit.uid for hit in receiver.hits) == sorted(outbox(desk))  # each once


def test_a_spent_schedule_is_dead_and_redelivery_sends_the_same_event(sqlite_desk: Desk, receiver: Receiver) -> None:
    settings = fast(sqlite_desk, webhook_retry_schedule="0.1")  # two attempts in all
    endpoint = register(sqlite_desk, receiver, settings)
    receiver.answers = [503, 500]
    confirmed(sqlite_desk, 1)
    drain(sqlite_desk, settings)
    (row,) = rows(sqlite_desk)
    assert (row.status, row.attempts, row.last_error) == ("dead", 2, "HTTP 500") and row.dead_at is not None

    assert webhooks.redeliver(sqlite_desk.sessions, OPERATOR, endpoint_id=endpoint) == 1
    drain(sqlite_desk, settings)
    (row,) = rows(sqlite_desk)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert [hit.status for hit in receiver.hits] == [503, 500, 204] and len({hit.uid for hit in receiver.hits}) == 1


def test_410_gone_disables_the_endpoint(sqlite_desk: Desk, receiver: Receiver) -> None:
    settings = fast(sqlite_desk)
    endpoint = register(sqlite_desk, receiver, settings)
    receiver.answers = [410]
    ann = staff(sqlite_desk)["ann"]
    (post_id,) = spam_queue(sqlite_desk, 1)
    undo(sqlite_desk.sessions, ann, claim_and_decide(sqlite_desk, ann, post_id, "confirm").id)  # two events

    delivery.run(sqlite_desk.sessions, settings, once=True)
    first, second = rows(sqlite_desk)
    assert (first.status, first.attempts, first.last_status_code) == ("dead", 1, 410)
    assert (second.status, second.attempts) == ("pending", 0)  # waits for the endpoint to come back
    (info,) = webhooks.list_endpoints(sqlite_desk.sessions)
    assert info.id == endpoint and not info.active and info.disabled_reason == "410 Gone"
    delivery.run(sqlite_desk.sessions, settings, once=True)
    assert len(receiver.hits) == 1


def test_a_redirect_is_a_failure_and_not_followed(sqlite_desk: Desk, receiver: Receiver) -> None:
    settings = fast(sqlite_desk)
    register(sqlite_desk, receiver, settings)
    receiver.server.expect_request("/elsewhere").respond_with_data("", status=204)
    receiver.answers = [302]
    confirmed(sqlite_desk, 1)
    delivery.run(sqlite_desk.sessions, settings, once=True)
    (row,) = rows(sqlite_desk)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 302)
    assert row.last_error == "HTTP 302 (redirects are not followed)"
    assert [request.path for request, _ in receiver.server.log] == ["/hook"]


def test_addresses_are_checked_again_when_sending(sqlite_desk: Desk, receiver: Receiver) -> None:
    """An endpoint registered while private addresses were allowed is refused at connect time
    once they are not (as a name that resolves elsewhere later would be): nothing is sent."""
    register(sqlite_desk, receiver, fast(sqlite_desk), url=f"http://localhost:{receiver.server.port}/hook")
    confirmed(sqlite_desk, 1)
    delivery.run(sqlite_desk.sessions, fast(sqlite_desk, webhook_allow_private=False), once=True)
    (row,) = rows(sqlite_desk)
    assert row.status == "pending" and row.attempts == 1 and row.last_status_code is None
    assert "localhost resolves to" in row.last_error and "loopback address" in row.last_error
    assert receiver.hits == []
    drain(sqlite_desk, fast(sqlite_desk))  # with the setting, the name's addresses are tried in turn
    assert len(receiver.delivered()) == 1


def test_two_workers_never_send_a_leased_delivery_twice(desk: Desk, receiver: Receiver) -> None:
    settings = fast(desk)
    register(desk, receiver, settings)
    receiver.delay = 0.01
    confirmed(desk, 40)
    stop = threading.Event()
    delivered = {"one": 0, "two": 0}

    def tally(name: str) -> Callable[[delivery.DeliveryStats], None]:
        return lambda stats: delivered.__setitem__(name, delivered[name] + stats.delivered)

    workers = [
        threading.Thread(target=delivery.run, args=(desk.sessions, settings),
                         kwargs={"batch": 5, "poll_seconds": 0.02, "stop": stop, "worker": name,
                                 "on_round": tally(name)})
        for name in delivered
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: pending(desk) == 0, 30)
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    uids = [hit.uid for hit in receiver.hits]
    assert sorted(uids) == sorted(outbox(desk))  # every event, each once
    assert delivered["one"] > 0 and delivered["two"] > 0 and sum(delivered.values()) == 40  # both worked


def test_a_worker_killed_mid_batch_loses_nothing(desk: Desk, receiver: Receiver) -> None:
    settings = fast(desk)
    register(desk, receiver, settings)
    receiver.delay = 0.4  # a slow receiver: the kill lands while requests are in flight
    confirmed(desk, 12)
    env = subprocess_env(desk) | {
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_TIMEOUT_SECONDS": "1",
        "WEBHOOK_RETRY_SCHEDULE": "0.2,0.5",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "review", "deliver", "--lease-seconds", "2", "--batch", "4"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: receiver.arrivals >= 1 or worker.poll() is not None, 30)
        assert worker.poll() is None, worker.communicate()[1]
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert any(row.lease_owner is not None and row.status == "pending" for row in rows(desk))  # left leased

    drain(desk, settings)  # a new worker takes over once the dead one's leases end
    events = outbox(desk)
    assert sorted({hit.uid for hit in receiver.delivered()}) == sorted(events)  # every event arrived
    assert all(hit.body == events[hit.uid].payload.encode() for hit in receiver.hits)  # a repeat is the same event


def test_the_retry_schedule_and_retry_after(sqlite_desk: Desk) -> None:
    settings = fast(sqlite_desk)
    assert 0.2 <= delivery.next_attempt_in(1, settings) <= 0.25  # jitter only lengthens
    assert 0.5 <= delivery.next_attempt_in(2, settings) <= 0.625
    assert delivery.next_attempt_in(3, settings) is None  # spent: dead
    assert delivery.next_attempt_in(1, settings, retry_after=30.0) == 30.0
    assert delivery._retry_after("120") == 120.0 and delivery._retry_after("999999999") == delivery.RETRY_AFTER_CAP
    assert delivery._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and delivery._retry_after("soon") is None


def test_deliver_once_on_the_command_line(
    sqlite_desk: Desk, receiver: Receiver, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from review.cli import main

    point_cli_at(monkeypatch, sqlite_desk, tmp_path)
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
    register(sqlite_desk, receiver, fast(sqlite_desk))
    confirmed(sqlite_desk, 2)
    assert main(["deliver", "--once"]) == 0
    assert (
        capsys.readouterr().out
        == "2 delivered, 0 failed (to retry), 0 dead\nin all: 2 delivered, 0 failed (to retry), 0 dead\n"
    )
    assert len(receiver.delivered()) == 2
    assert main(["deliver", "--lease-seconds", "5"]) == 2  # not longer than the 15 s timeout
    assert "must be longer than WEBHOOK_TIMEOUT_SECONDS (15 s)" in capsys.readouterr().err


def test_the_worker_waits_for_the_database_and_goes_on(own_pg, receiver: Receiver) -> None:
    pg, desk = own_pg
    settings = fast(desk)
    register(desk, receiver, settings)
    receiver.delay = 0.02
    confirmed(desk, 20)
    stop = threading.Event()
    outcome: dict[str, delivery.DeliveryStats] = {}

    def work() -> None:
        outcome["total"] = delivery.run(desk.sessions, settings, batch=2, poll_seconds=0.05, stop=stop, retry_wait=60)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        wait_for(lambda: len(receiver.hits) >= 4, 30)
        pg.kill()  # mid-run: the worker's next lease or finish finds no database
        time.sleep(0.5)
        pg.start()
        wait_for(lambda: len({hit.uid for hit in receiver.delivered()}) == 20, 60)
        wait_for(lambda: pending(desk) == 0, 30)
    finally:
        stop.set()
        worker.join(30)
    assert outcome["total"].database_waits >= 1  # it waited …
    assert sorted({hit.uid for hit in receiver.delivered()}) == sorted(outbox(desk))  # … and lost nothing
    assert {row.status for row in rows(desk)} == {"delivered"}


def test_an_outcome_is_kept_only_while_the_lease_is_held(sqlite_desk: Desk, receiver: Receiver) -> None:
    """A worker whose lease ran out, and another took the delivery, records nothing: the other's
    attempt counts (and may send it again, with the same webhook-id)."""
    settings = fast(sqlite_desk)
    register(sqlite_desk, receiver, settings)
    confirmed(sqlite_desk, 2)
    ids = delivery.lease_deliveries(sqlite_desk.sessions, "slow", 10, timedelta(0))  # a lease that has run out
    assert delivery.lease_deliveries(sqlite_desk.sessions, "fast", 10) == ids  # … is taken by another worker
    jobs = delivery._jobs(sqlite_desk.sessions, "fast", ids)
    attempts = [delivery.Attempt(job, datetime.now(UTC), 204) for job in jobs]
    stats = delivery._finish(sqlite_desk.sessions, "slow", attempts, settings)
    assert (stats.delivered, stats.lost_leases) == (0, 2)
    assert {(row.status, row.attempts, row.lease_owner) for row in rows(sqlite_desk)} == {("pending", 0, "fast")}
    assert delivery._finish(sqlite_desk.sessions, "fast", attempts, settings).delivered == 2


def test_a_dripping_receiver_times_out_on_time_and_holds_no_other_delivery(
    desk: Desk, receiver: Receiver, dripper: str
) -> None:
    """WEBHOOK_TIMEOUT_SECONDS bounds the whole request, not each read: a receiver that sends a
    byte every 0.2 s is cut off after 1 s, and the healthy endpoint's delivery of the same round
    is recorded then, not when the dripper would have finished."""
    settings = fast(desk, webhook_timeout_seconds=1.0)
    register(desk, receiver, settings)
    webhooks.add_endpoint(desk.sessions, OPERATOR, dripper, settings)
    confirmed(desk, 1)
    worker = delivery.Worker(desk.sessions, settings)
    with delivery.make_client(settings) as client, ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        stats = worker.round(client, pool)
        took = time.monotonic() - started
    assert took < 1.0 + 1.0, took
    assert (stats.delivered, stats.retrying) == (1, 1) and len(receiver.delivered()) == 1
    outcomes = sorted((row.status, row.attempts, row.last_error, row.lease_owner) for row in rows(desk))
    assert outcomes == [("delivered", 1, None, None), ("pending", 1, "timed out after 1 s", None)]


def test_a_request_whose_answer_could_outlast_its_lease_is_not_sent(sqlite_desk: Desk, receiver: Receiver) -> None:
    settings = fast(sqlite_desk, webhook_timeout_seconds=1.0)
    register(sqlite_desk, receiver, settings)
    confirmed(sqlite_desk, 1)
    (job,) = delivery._jobs(sqlite_desk.sessions, "w", delivery.lease_deliveries(sqlite_desk.sessions, "w", 10))
    with delivery.make_client(settings) as client:
        too_late = time.monotonic() + 1.0 + delivery.RECORD_MARGIN / 2  # no time left to record the answer
        assert not delivery.send(client, job, settings, too_late).sent and receiver.arrivals == 0
        assert delivery.send(client, job, settings, time.monotonic() + 1.0 + delivery.RECORD_MARGIN + 1).ok


def test_leases_and_retries_are_kept_by_the_database_clock(desk: Desk, receiver: Receiver) -> None:
    settings = fast(desk, webhook_retry_schedule="30")
    register(desk, receiver, settings)
    receiver.answers = [500]
    confirmed(desk, 1)
    with desk.sessions() as session:
        before = webhooks.database_now(session)
    ids = delivery.lease_deliveries(desk.sessions, "w", 10, timedelta(seconds=60))
    (row,) = rows(desk)
    assert before + timedelta(seconds=60) <= row.lease_expires_at <= before + timedelta(seconds=65)
    with delivery.make_client(settings) as client:
        attempts = [delivery.send(client, job, settings) for job in delivery._jobs(desk.sessions, "w", ids)]
    assert delivery._finish(desk.sessions, "w", attempts, settings).retrying == 1
    (row,) = rows(desk)
    assert before + timedelta(seconds=30) <= row.next_attempt_at <= before + timedelta(seconds=45)  # 30 s + jitter


def test_sigterm_to_the_api_stops_its_delivery_worker_cleanly(desk: Desk, receiver: Receiver) -> None:
    """``api --deliver`` on SIGTERM: the requests in flight are answered and recorded, the rest of
    the round is released, and no delivery stays leased (none waits for its lease to run out)."""
    settings = fast(desk)
    register(desk, receiver, settings)
    receiver.delay = 0.5  # the signal lands while requests are in flight
    confirmed(desk, 40)
    env = subprocess_env(desk) | {"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_TIMEOUT_SECONDS": "2"}
    server = subprocess.Popen(
        [sys.executable, "-m", "review", "api", "--port", str(free_port()), "--deliver"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: receiver.arrivals >= 1 or server.poll() is not None, 60)
        assert server.poll() is None, server.communicate()[1]
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "Traceback" not in err, err
    assert [row.id for row in rows(desk) if row.lease_owner is not None] == []
    events = outbox(desk)
    uid_of = {event.id: uid for uid, event in events.items()}
    recorded = sorted(uid_of[row.event_id] for row in rows(desk) if row.status == "delivered")
    assert recorded == sorted(hit.uid for hit in receiver.delivered()) and 0 < len(recorded) < 40
