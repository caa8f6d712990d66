"""The HTTP API (review/api/) served by a real uvicorn on 127.0.0.1 and spoken to with an HTTP
client, on SQLite and Postgres: tokens and scopes (and the token never in a log line or an
answer), batches of posts in (text, inline base64 images, multipart parts; idempotent; bad
records rejected with their reasons and the good ones kept; malformed and oversized bodies
refused), reports on posts, a post read back, and the decision feed."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import signal
import socket
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image
from sqlalchemy import select

from db.models import AuditEvent, Media, Post, PostReport
from review.api.schemas import MAX_BATCH, MAX_BODY_BYTES
from review.auth import OPERATOR
from review.decisions import claim, decide
from review.desk import Desk
from review.tokens import revoke_token
from tests.conftest import free_port, row_count, start_cli, stored_posts, wait_for
from tests.factories import spam_queue, staff
from tests.live_api import LiveApi, bearer, token


@pytest.fixture
def api(desk: Desk) -> Iterator[tuple[Desk, httpx.Client]]:
    """The API on the desk (SQLite and Postgres) and a client holding a token with every scope."""
    with LiveApi(desk.settings) as served, httpx.Client(base_url=served.url, timeout=60) as client:
        client.headers.update(bearer(token(desk, "platform")))
        yield desk, client


@pytest.fixture
def sqlite_api(sqlite_desk: Desk) -> Iterator[tuple[Desk, str]]:
    """The API on a SQLite desk, and its URL (the client is the test's own)."""
    with LiveApi(sqlite_desk.settings) as served:
        yield sqlite_desk, served.url


def jpeg_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 40 % 256, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bomb(side: int = 100_000) -> bytes:
    """A PNG whose header claims ``side`` × ``side`` pixels (10 gigapixels), a few bytes long."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


JSON = {"content-type": "application/json"}


def by_index(answer: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["index"]: r for r in answer["results"]}


# --------------------------------------------------------------------------------------------
# The service, tokens and scopes


def test_health_docs_and_openapi(sqlite_api: tuple[Desk, str]) -> None:
    _, url = sqlite_api
    with httpx.Client(base_url=url) as client:
        assert client.get("/v1/health").json() == {"ok": True, "database": "ok"}
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
    assert all(path.startswith("/v1/") for path in spec["paths"])
    assert {"/v1/posts", "/v1/posts/{source}/{external_id}", "/v1/decisions", "/v1/flags"} <= set(spec["paths"])
    assert str(MAX_BATCH) in json.dumps(spec["paths"]["/v1/posts"])  # the batch limit is documented


def test_tokens_and_scopes(sqlite_api: tuple[Desk, str], caplog: pytest.LogCaptureFixture) -> None:
    """401 without a live token (none, garbage, another scheme, in the URL, revoked), 403 without
    the route's scope; the token is never in an answer or a log line."""
    caplog.set_level(logging.DEBUG)
    desk, url = sqlite_api
    reader = token(desk, "reader", "read")
    feeder = token(desk, "feeder", "decisions")
    pusher = token(desk, "pusher", "ingest")
    mistyped = pusher[:-1] + ("a" if pusher[-1] != "a" else "b")
    bodies = []
    with httpx.Client(base_url=url) as client:

        def call(method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
            response = client.request(method, path, headers=headers or {}, **kwargs)
            bodies.append(response.text)
            return response

        for headers in ({}, bearer("nonsense"), bearer(mistyped), {"Authorization": f"Basic {pusher}"}):
            response = call("GET", "/v1/decisions", headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"]
        assert "Authorization: Bearer" in call("GET", "/v1/decisions").json()["detail"]

        in_url = call("GET", f"/v1/decisions?token={feeder}")
        assert in_url.status_code == 401 and "never in the URL" in in_url.json()["detail"]

        assert call("GET", "/v1/decisions", bearer(feeder)).status_code == 200
        for who in (reader, pusher):
            refused = call("GET", "/v1/decisions", bearer(who))
            assert refused.status_code == 403 and "'decisions' scope" in refused.json()["detail"]
        for who in (reader, feeder):
            assert call("POST", "/v1/posts", bearer(who), json={"posts": [{"external_id": "x"}]}).status_code == 403
            assert call("POST", "/v1/flags", bearer(who), json={}).status_code == 403
        for who in (pusher, feeder):
            assert call("GET", "/v1/posts/s/x", bearer(who)).status_code == 403
        assert call("GET", "/v1/posts/s/x", bearer(reader)).status_code == 404

        # a 422 says which fields are at fault without echoing what was sent
        invalid = call("POST", "/v1/posts", bearer(pusher), json={"posts": "secret-ish value", "extra": pusher})
        assert invalid.status_code == 422
        assert {tuple(e["loc"]) for e in invalid.json()["detail"]} == {("posts",), ("extra",)}
        assert "secret-ish" not in invalid.text

        revoke_token(desk.sessions, OPERATOR, "feeder")
        assert call("GET", "/v1/decisions", bearer(feeder)).status_code == 401

    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "GET /v1/decisions?token=rd_[hidden]" in logged  # the server's access log was captured
    for secret in (reader, feeder, pusher, mistyped):
        assert secret not in logged
        assert not any(secret in body for body in bodies)


# --------------------------------------------------------------------------------------------
# Posts in


def test_a_batch_is_stored_once(api: tuple[Desk, httpx.Client]) -> None:
    desk, client = api
    records = [
        {"external_id": "t1", "source": "weibo", "text": "hello", "author": "a", "created_at": "2026-11-20T08:00:00Z"},
        {"external_id": "t2", "source": "weibo", "text": "with metadata", "metadata": {"lang": "zh"}},
        {"external_id": "a/b/c", "source": "weibo", "text": "an id with slashes"},
    ]
    first = client.post("/v1/posts", json={"posts": records})
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["created"], answer["already_present"], answer["rejected"]) == (3, 0, 0)
    assert [r["status"] for r in answer["results"]] == ["created"] * 3
    assert [r["external_id"] for r in answer["results"]] == ["t1", "t2", "a/b/c"]

    again = client.post("/v1/posts", json={"posts": records}).json()
    assert (again["created"], again["already_present"]) == (0, 3)
    assert [r["post_id"] for r in again["results"]] == [r["post_id"] for r in answer["results"]]
    assert [r["reason"] for r in again["results"]] == [None] * 3
    edited = client.post("/v1/posts", json={"posts": [records[0] | {"text": "hello, edited"}]}).json()
    assert edited["already_present"] == 1  # the API changes no stored post, and says the record differs
    assert edited["results"][0]["reason"].startswith("differs from the stored post; kept the stored content")
    assert edited["results"][0]["reason"].endswith("(value 'text')")
    assert row_count(desk, Post) == 3
    with desk.sessions() as session:  # each batch is an ingest in the audit log, by its token
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "ingest").order_by(AuditEvent.id)).all()
    assert [(r.actor_name, r.details["added"], r.details["already_present"]) for r in rows] == [
        ("(api token platform)", 3, 0), ("(api token platform)", 0, 3), ("(api token platform)", 0, 1)
    ]  # fmt: skip

    read = client.get("/v1/posts/weibo/t1")
    assert read.status_code == 200
    assert read.json() | {"decisions": []} == {
        "source": "weibo", "external_id": "t1", "status": "unscored", "report_count": 0, "reports": [],
        "verdict": None, "decisions": [],
    }  # fmt: skip
    slashed = client.get("/v1/posts", params={"source": "weibo", "external_id": "a/b/c"})
    assert slashed.status_code == 200 and slashed.json()["external_id"] == "a/b/c"
    assert client.get("/v1/posts/weibo/nope").status_code == 404


def test_images_inline_and_as_parts(api: tuple[Desk, httpx.Client]) -> None:
    desk, client = api
    inline = {
        "external_id": "i1",
        "source": "x",
        "text": "inline",
        "images": [{"name": "a.jpg", "data": b64(jpeg_bytes(1))}],
    }
    answer = client.post("/v1/posts", json={"posts": [inline]}).json()
    assert answer["created"] == 1, answer

    batch = {
        "posts": [
            {"external_id": "m1", "source": "x", "text": "two parts", "images": ["one.jpg", "two.jpg"]},
            {"external_id": "m2", "source": "x", "text": "a part shared", "images": ["two.jpg"]},
        ]
    }
    files = [
        ("posts", (None, json.dumps(batch), "application/json")),
        ("one.jpg", ("one.jpg", jpeg_bytes(2), "image/jpeg")),
        ("two.jpg", ("whatever-the-filename.jpg", jpeg_bytes(3), "image/jpeg")),
    ]
    multipart = client.post("/v1/posts", files=files)
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["created"] == 2, multipart.json()

    posts = stored_posts(desk)
    assert [link.media.width for link in posts["i1"].media_links] == [64]
    assert [link.original_name for link in posts["m1"].media_links] == ["one.jpg", "two.jpg"]
    assert posts["m2"].media_links[0].media_id == posts["m1"].media_links[1].media_id  # one file, stored once
    assert row_count(desk, Media) == 3

    # a part's name is a key into the request, never a path
    sneaky = {"posts": [{"external_id": "m3", "source": "x", "images": ["../../etc/passwd"]}]}
    parts = [("posts", (None, json.dumps(sneaky), "application/json")), ("../../etc/passwd", ("p", jpeg_bytes(4)))]
    assert client.post("/v1/posts", files=parts).json()["created"] == 1
    (link,) = stored_posts(desk)["m3"].media_links
    assert link.original_name == "../../etc/passwd"
    assert (desk.settings.media_dir / link.media.path).resolve().is_relative_to(desk.settings.media_dir.resolve())


def test_the_same_batch_twice_at_once_stores_each_post_once(api: tuple[Desk, httpx.Client]) -> None:
    desk, client = api
    batch = {"posts": [{"external_id": f"c{i}", "source": "s", "text": f"post {i}"} for i in range(50)]}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/posts", json=batch), range(4)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    results = [a.json() for a in answers]
    assert sum(r["created"] for r in results) == 50
    assert all(r["created"] + r["already_present"] == 50 for r in results)
    assert row_count(desk, Post) == 50


def test_bad_records_are_rejected_with_reasons_and_the_good_kept(sqlite_api: tuple[Desk, str], tmp_path: Path) -> None:
    desk, url = sqlite_api
    records: list[Any] = [
        {"external_id": "good1", "source": "s", "text": "fine"},
        {"external_id": "b64", "source": "s", "images": [{"name": "a.jpg", "data": "not base64!!"}]},
        {"external_id": "bomb", "source": "s", "images": [{"name": "bomb.png", "data": b64(png_bomb())}]},
        {"external_id": "traversal", "source": "s", "images": ["../../etc/passwd"]},
        {"external_id": "unknown", "source": "s", "text": "x", "colour": "red"},
        {"external_id": "types", "source": "s", "text": ["not", "text"]},
        {"external_id": "when", "source": "s", "created_at": "yesterday"},
        {"external_id": "flag", "source": "s", "reports": [{"kind": "angry_user", "count": 0}]},
        {"source": "s", "text": "no id"},
        {"external_id": "nowhere", "text": "no source: the desk would have to guess one"},
        {
            "external_id": "good2",
            "source": "s",
            "text": "fine too",
            "images": [{"name": "../x.jpg", "data": b64(jpeg_bytes())}],
        },
    ]
    with httpx.Client(base_url=url, headers=bearer(token(desk, "p"))) as client:
        answer = client.post("/v1/posts", json={"posts": records}).json()
    results = by_index(answer)
    assert (answer["created"], answer["rejected"]) == (2, 9)
    assert {i for i, r in results.items() if r["status"] == "created"} == {0, 10}
    reasons = {results[i]["external_id"] or str(i): results[i]["reason"] for i in results if i not in (0, 10)}
    assert "not valid base64" in reasons["b64"]
    assert "megapixels" in reasons["bomb"]
    assert "no image of that name came with the record" in reasons["traversal"]
    assert "unknown field 'colour'" in reasons["unknown"]
    assert "text" in reasons["types"]
    assert "created_at" in reasons["when"]
    assert "reports.0.kind" in reasons["flag"] and "reports.0.count" in reasons["flag"]
    assert "external_id" in reasons["8"]
    assert "source is required" in reasons["nowhere"]
    assert all(r["reason"] is None for r in answer["results"] if r["status"] == "created")
    assert set(stored_posts(desk)) == {"good1", "good2"}
    partial = {"external_id": "nodata", "source": "s", "images": [{"name": "a.jpg", "colour": "red"}]}
    with httpx.Client(base_url=url, headers=bearer(token(desk, "q"))) as client:
        (answered,) = client.post("/v1/posts", json={"posts": [partial]}).json()["results"]
    assert answered["reason"] == "images[0].data: Field required; unknown field 'images[0].colour'"
    # an image's name is a label, never a path: nothing was written beside the media store
    assert not (tmp_path / "x.jpg").exists() and not (desk.settings.media_dir.parent / "x.jpg").exists()


def test_malformed_and_oversized_bodies_are_refused(sqlite_api: tuple[Desk, str]) -> None:
    desk, url = sqlite_api
    with httpx.Client(base_url=url, headers=bearer(token(desk, "p"))) as client:

        def post(**kwargs: Any) -> httpx.Response:
            return client.post("/v1/posts", **kwargs)

        broken = post(content=b'{"posts": [', headers=JSON)
        assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
        latin = post(content=b'{"posts": ["\xff"]}', headers=JSON)
        assert latin.status_code == 400 and "UTF-8" in latin.json()["detail"]
        deep = post(content=b'{"posts": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", headers=JSON)
        assert deep.status_code == 422 and "nested too deeply" in deep.json()["detail"]
        halved = post(content=b'{"posts": [{"external_id": "h", "source": "\\ud800"}]}', headers=JSON)
        assert halved.status_code == 200 and halved.json()["results"][0]["source"] == "\\ud800"  # escaped
        extra = post(json={"posts": [{"external_id": "a"}], "dry_run": True})
        assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["dry_run"]
        too_many = post(json={"posts": [{"external_id": str(i)} for i in range(MAX_BATCH + 1)]})
        assert too_many.status_code == 422 and str(MAX_BATCH) in too_many.json()["detail"][0]["msg"]
        assert post(json={"posts": []}).status_code == 422
        assert post(json=[{"external_id": "a"}]).status_code == 422
        assert post(json={"posts": [{"external_id": "a"}, "not an object"]}).status_code == 422
        plain = post(content=b"external_id=a", headers={"content-type": "text/plain"})
        assert plain.status_code == 415 and "application/json" in plain.json()["detail"]
        no_posts = post(files=[("a.jpg", ("a.jpg", jpeg_bytes(), "image/jpeg"))])
        assert no_posts.status_code == 422 and "'posts'" in no_posts.json()["detail"]
        bad_part = post(files=[("posts", (None, "{oops", "application/json"))])
        assert bad_part.status_code == 422 and "not valid JSON" in bad_part.json()["detail"]
        assert post(
            content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}
        ).status_code in (400, 422)
    assert row_count(desk, Post) == 0

    port = int(url.rsplit(":", 1)[1])
    declared = _raw_post(port, {"Content-Length": str(MAX_BODY_BYTES + 1)}, [b"{"])
    assert declared.startswith(b"HTTP/1.1 413") and b"the limit is" in declared
    chunk = b"x" * 2**20
    streamed = _raw_post(
        port,
        {"Transfer-Encoding": "chunked", "Authorization": f"Bearer {token(desk, 'q')}"},
        [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (MAX_BODY_BYTES // len(chunk) + 1),
    )
    assert streamed.startswith(b"HTTP/1.1 413") and b"Content Too Large" in streamed


def _raw_post(port: int, headers: dict[str, str], pieces: list[bytes]) -> bytes:
    """POST /v1/posts over a bare socket (a client that announces or streams more than it may
    send), and the start of the answer."""
    lines = ["POST /v1/posts HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in pieces:
            sock.sendall(piece)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            answer += sock.recv(4096)
        return answer


def _length(head: bytes) -> int:
    found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return int(found.group(1)) if found else 0


# --------------------------------------------------------------------------------------------
# Reports, a post read back, the decision feed


def _decided(desk: Desk, n: int) -> list[int]:
    """``n`` queued posts (source "t", external ids p0 …) confirmed by a moderator, in order."""
    ids = spam_queue(desk, n)
    ann = staff(desk)["ann"]
    for post_id in ids:
        assert claim(desk.sessions, ann, post_id) is not None
        decide(desk.sessions, ann, post_id, "confirm")
    return ids


def test_reports_come_in_with_posts_and_as_flags(api: tuple[Desk, httpx.Client]) -> None:
    desk, client = api
    flagged = {
        "external_id": "r1",
        "source": "s",
        "text": "t",
        "reports": [{"kind": "user_report", "reason": "spam", "count": 4}],
    }
    assert client.post("/v1/posts", json={"posts": [flagged]}).json()["created"] == 1
    again = client.post("/v1/posts", json={"posts": [flagged]}).json()
    assert again["already_present"] == 1
    read = client.get("/v1/posts/s/r1").json()
    assert read["report_count"] == 4  # a re-post does not count its reports twice
    assert [(r["kind"], r["reason"], r["count"]) for r in read["reports"]] == [("user_report", "spam", 4)]

    body = {"kind": "classifier", "reason": "model says spam", "count": 1}
    added = client.post("/v1/posts/s/r1/flags", json=body)
    assert added.status_code == 200, added.text
    assert added.json() == {"post_status": "unscored", "report_count": 5, "requeued": False}
    assert client.post("/v1/posts/s/nope/flags", json=body).status_code == 404
    assert client.post("/v1/posts/s/r1/flags", json={**body, "count": 0}).status_code == 422
    assert client.post("/v1/posts/s/r1/flags", json={**body, "kind": "nobody"}).status_code == 422
    assert client.post("/v1/flags", json={**body, "source": "s", "external_id": "nope/1"}).status_code == 404

    # on a decided post a report is counted; whether it re-queues is review.reports' rule
    (decided,) = _decided(desk, 1)
    reports = []
    for _ in range(desk.settings.requeue_after_reports + 1):
        answer = client.post("/v1/flags", json={**body, "source": "t", "external_id": "p0"})
        assert answer.status_code == 200, answer.text
        reports.append(answer.json())
    with desk.sessions() as session:
        post = session.get(Post, decided)
        assert post is not None
        assert reports[-1]["post_status"] == post.status and reports[-1]["report_count"] == post.report_count
        assert [r["report_count"] for r in reports] == list(range(1, len(reports) + 1))
        assert session.scalars(select(PostReport.token_id).where(PostReport.post_id == decided)).all()
    assert reports[0]["post_status"] == "decided"
    assert any(r["requeued"] for r in reports) == (post.status == "queued")


def test_a_decided_post_reads_back(api: tuple[Desk, httpx.Client]) -> None:
    desk, client = api
    _decided(desk, 1)
    read = client.get("/v1/posts/t/p0")
    assert read.status_code == 200
    post = read.json()
    assert post["status"] == "decided"
    assert post["verdict"] == {
        "violation": True, "category": "fraud_spam", "severity": 2, "confidence": 0.9, "parse_status": "ok"
    }  # fmt: skip
    (event,) = post["decisions"]
    assert event["type"] == "decision.confirmed"
    assert event["data"]["post"] == {"source": "t", "external_id": "p0", "status": "decided"}
    assert event["data"]["label"]["category"] == "fraud_spam" and event["data"]["policy_action"]


def test_the_decision_feed_pages_by_cursor(api: tuple[Desk, httpx.Client]) -> None:
    desk, client = api
    empty = client.get("/v1/decisions").json()
    assert empty == {"events": [], "next": "0"}
    _decided(desk, 5)
    first = client.get("/v1/decisions", params={"limit": 2}).json()
    assert [e["data"]["post"]["external_id"] for e in first["events"]] == ["p0", "p1"]
    second = client.get("/v1/decisions", params={"after": first["next"], "limit": 2}).json()
    rest = client.get("/v1/decisions", params={"after": second["next"]}).json()
    seen = [e["data"]["event_id"] for page in (first, second, rest) for e in page["events"]]
    assert len(seen) == len(set(seen)) == 5
    assert [e["data"]["post"]["external_id"] for e in rest["events"]] == ["p4"]
    past = client.get("/v1/decisions", params={"after": rest["next"]}).json()
    assert past == {"events": [], "next": rest["next"]}
    assert client.get("/v1/decisions", params={"after": "999999"}).json() == {"events": [], "next": "999999"}
    for params in ({"after": "abc"}, {"after": "-1"}, {"limit": 0}, {"limit": 1001}, {"limit": "many"}):
        refused = client.get("/v1/decisions", params=params)
        assert refused.status_code == 422, params
        assert refused.json()["detail"][0]["loc"][0] == "query"


def test_the_command_serves_the_api(sqlite_desk: Desk) -> None:
    """``python -m review api`` with two workers and the delivery worker: it serves, and SIGTERM
    stops it cleanly."""
    port = free_port()
    reader = token(sqlite_desk, "reader", "read")
    server = start_cli(sqlite_desk.settings.database_url, sqlite_desk.settings.media_dir,
                       "api", "--port", str(port), "--workers", "2", "--deliver")  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            def up() -> bool:
                try:
                    return client.get("/v1/health").status_code == 200
                except httpx.TransportError:
                    if server.poll() is not None:
                        pytest.fail(server.communicate()[1])
                    return False

            wait_for(up, timeout=60)
            assert client.get("/v1/posts/s/x", headers=bearer(reader)).status_code == 404
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "Traceback" not in err and reader not in err


def test_a_database_outage_is_a_503_without_a_traceback(own_pg: tuple[Any, Desk]) -> None:
    pg, desk = own_pg
    reader = token(desk, "reader", "read")
    with LiveApi(desk.settings) as served, httpx.Client(base_url=served.url, timeout=60) as client:
        assert client.get("/v1/health").json() == {"ok": True, "database": "ok"}
        pg.kill()
        for answer in (client.get("/v1/health"), client.get("/v1/posts/s/x", headers=bearer(reader))):
            assert answer.status_code == 503, answer.text
            assert "database is unavailable" in answer.json()["detail"] and "Traceback" not in answer.text
        pg.start()
        wait_for(lambda: client.get("/v1/health").status_code == 200)
        assert client.get("/v1/posts/s/x", headers=bearer(reader)).status_code == 404
