"""The query service, tested over real HTTP on loopback: a uvicorn server in a thread (or a
``dsi serve`` subprocess) in front of a tiny index.

Tests that feed the server bad input record how many they tried with
``record_property("bad_inputs", n)``; run with ``--junitxml`` to add them up.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

import dsi  # noqa: E402
from dsi.index import GenerativeIndex  # noqa: E402
from dsi.retriever import Retriever  # noqa: E402
from dsi.server import ServerSettings, bind, create_app, parse_search  # noqa: E402
from tests.conftest import child_env, random_corpus, tiny_config  # noqa: E402

N_DOCS = 16
BOUNDS = {"max_body_bytes": 4096, "max_queries": 8, "max_query_chars": 200, "max_k": 20}


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 at a free port, in a background thread."""

    def __init__(self, app) -> None:
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start within 20 s"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        assert not self.thread.is_alive(), "the server did not shut down"


def client(url: str, timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=timeout, trust_env=False)


@pytest.fixture(scope="module")
def corpus():
    return random_corpus(random.Random(7), N_DOCS)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, corpus) -> Path:
    directory = tmp_path_factory.mktemp("served") / "idx"
    GenerativeIndex.build(corpus, tiny_config(steps=10), progress_bar=False).save(directory)
    return directory


@pytest.fixture(scope="module")
def reference(index_dir) -> Retriever:
    """A retriever of its own: the server's is used by its decode thread only."""
    return Retriever.load(index_dir, device="cpu")


@pytest.fixture(scope="module")
def live(index_dir) -> Iterator[LiveServer]:
    retriever = Retriever.load(index_dir, device="cpu")
    # A wide batching window, so that concurrent test requests surely meet.
    settings_ = ServerSettings(max_wait_ms=50, index_path=str(index_dir), **BOUNDS)
    with LiveServer(create_app(retriever, settings_)) as server:
        yield server


@pytest.fixture
def http(live) -> Iterator[httpx.Client]:
    with client(live.url) as c:
        yield c


def as_pairs(hits) -> list[tuple[str, float]]:
    return [(h.doc_id, h.score) for h in hits]


def assert_same(served: list[list[dict]], expected) -> None:
    """Same doc ids in the same order; scores equal up to batch padding noise (~1e-6)."""
    assert len(served) == len(expected)
    for row, hits in zip(served, expected, strict=True):
        assert [r["doc_id"] for r in row] == [h.doc_id for h in hits]
        assert [r["score"] for r in row] == pytest.approx([h.score for h in hits], abs=1e-4)


def assert_healthy(url: str) -> None:
    with client(url) as c:
        reply = c.get("/health")
    assert reply.status_code == 200 and reply.json()["status"] == "ok"


# ------------------------------------------------------------------------------ happy path
def test_health_names_the_index(http, index_dir) -> None:
    reply = http.get("/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok"
    assert body["num_docs"] == N_DOCS
    assert body["index"] == str(index_dir)
    assert body["version"] == dsi.__version__
    assert isinstance(body["decode_batches"], int)


@pytest.mark.parametrize("k", [1, 3, 5, 20])
def test_search_equals_retriever_search(http, reference, corpus, k) -> None:
    queries = [*corpus.texts[:5], "\u2207", "unrelated words entirely", "Zürich – 東京 ✓"]
    reply = http.post("/search", json={"queries": queries, "k": k})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert_same(results, reference.search(queries, k=k))
    assert all(1 <= len(row) <= min(k, N_DOCS) for row in results)


def test_default_k_is_ten(http, reference) -> None:
    reply = http.post("/search", json={"queries": ["river stone"]})
    assert reply.status_code == 200
    assert_same(reply.json()["results"], reference.search(["river stone"], k=10))


def test_concurrent_requests_are_batched_and_answered_correctly(live, reference, corpus) -> None:
    rng = random.Random(11)
    requests = []
    for i in range(16):
        n = rng.randint(1, 2)
        queries = [corpus.texts[(i + j) % N_DOCS][: rng.randint(5, 60)] for j in range(n)]
        requests.append((queries, rng.choice([3, 5, 10])))

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live.url, timeout=30, trust_env=False) as c:
            return await asyncio.gather(
                *(c.post("/search", json={"queries": q, "k": k}) for q, k in requests)
            )

    with client(live.url) as c:
        before = c.get("/stats").json()
        replies = asyncio.run(send_all())
        after = c.get("/stats").json()
    for (queries, k), reply in zip(requests, replies, strict=True):
        assert reply.status_code == 200, reply.text
        assert_same(reply.json()["results"], reference.search(queries, k=k))
    batches = after["decode_batches"] - before["decode_batches"]
    assert after["requests"] - before["requests"] == 16
    # k=3 and k=5 share a beam width (5), k=10 needs its own: a few calls, not one per request.
    assert batches <= 8, f"{batches} decode calls for 16 concurrent requests"


# ---------------------------------------------------------------------------- bad requests
J = json.dumps
BAD_REQUESTS = [
    # (id, body bytes, status, reason)
    ("truncated-json", b'{"queries": ["a"', 400, "not valid JSON"),
    ("not-utf8", b'{"queries": ["caf\xe9"]}', 400, "not valid JSON"),
    ("empty-body", b"", 400, "body is empty"),
    ("whitespace-body", b"  \n ", 400, "body is empty"),
    ("deep-nesting", b"[" * 3000, 400, "not valid JSON"),
    ("json-list", J(["river"]).encode(), 400, "must be a JSON object, not a list"),
    ("json-string", J("river").encode(), 400, "must be a JSON object, not a string"),
    ("json-null", b"null", 400, "must be a JSON object, not null"),
    ("json-number", b"3", 400, "must be a JSON object, not an integer"),
    ("missing-queries", J({"k": 3}).encode(), 400, "'queries' is missing"),
    ("unknown-field", J({"queries": ["a"], "top_k": 3}).encode(), 400, "Unknown field 'top_k'"),
    ("queries-string", J({"queries": "river"}).encode(), 400, "list of strings, not a string"),
    ("queries-null", J({"queries": None}).encode(), 400, "list of strings, not null"),
    ("queries-object", J({"queries": {"a": 1}}).encode(), 400, "not an object"),
    ("queries-empty", J({"queries": []}).encode(), 400, "'queries' is empty"),
    ("query-int", J({"queries": ["a", 7]}).encode(), 400, "Query 1 must be a string, not an int"),
    ("query-null", J({"queries": [None]}).encode(), 400, "Query 0 must be a string, not null"),
    ("query-list", J({"queries": [["a"]]}).encode(), 400, "Query 0 must be a string, not a list"),
    ("query-surrogate", b'{"queries": ["ok", "bad \\ud800"]}', 400, "unpaired surrogate"),
    ("query-empty", J({"queries": ["a", ""]}).encode(), 422, "Query 1 is empty"),
    ("query-blank", J({"queries": [" \t\n\u3000"]}).encode(), 422, "Query 0 is only whitespace"),
    ("too-many-queries", J({"queries": ["q"] * 9}).encode(), 422, "9 queries in one request"),
    ("query-too-long", J({"queries": ["a", "x" * 201]}).encode(), 422, "Query 1 has 201 char"),
    ("k-zero", J({"queries": ["a"], "k": 0}).encode(), 422, "between 1 and 20, got 0"),
    ("k-negative", J({"queries": ["a"], "k": -3}).encode(), 422, "between 1 and 20, got -3"),
    ("k-too-large", J({"queries": ["a"], "k": 21}).encode(), 422, "between 1 and 20, got 21"),
    ("k-huge", J({"queries": ["a"], "k": 10**40}).encode(), 422, "between 1 and 20"),
    ("k-string", J({"queries": ["a"], "k": "5"}).encode(), 400, "integer, not a string"),
    ("k-float", J({"queries": ["a"], "k": 2.0}).encode(), 400, "integer, not a number"),
    ("k-bool", J({"queries": ["a"], "k": True}).encode(), 400, "integer, not a boolean"),
    ("k-null", J({"queries": ["a"], "k": None}).encode(), 400, "integer, not null"),
    ("k-nan", b'{"queries": ["a"], "k": NaN}', 400, "integer, not a number"),
    ("body-too-large", J({"queries": ["a"], "k": 3}).encode() + b" " * 4100, 413, "limit of 4096"),
]


@pytest.mark.parametrize(
    ("body", "status", "reason"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_request_is_refused_with_its_reason(
    live, http, record_property, body, status, reason
) -> None:
    reply = http.post("/search", content=body, headers={"content-type": "application/json"})
    record_property("bad_inputs", 1)
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"error"}
    message = reply.json()["error"]
    assert reason in message and "\n" not in message
    assert_healthy(live.url)


def test_body_too_large_without_content_length(live, http, record_property) -> None:
    def chunks():  # a chunked upload declares no length: the limit applies while reading
        yield b'{"queries": ["a"], "k": 3}'
        for _ in range(10):
            yield b" " * 1000

    reply = http.post("/search", content=chunks())
    record_property("bad_inputs", 1)
    assert reply.status_code == 413
    assert "larger than the limit of 4096 bytes" in reply.json()["error"]
    assert_healthy(live.url)


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("GET", "/search", 405, "/search does not accept GET"),
        ("POST", "/health", 405, "/health does not accept POST"),
        ("DELETE", "/search", 405, "does not accept DELETE"),
        ("GET", "/nowhere", 404, "no endpoint /nowhere"),
        ("POST", "/search/extra", 404, "no endpoint"),
    ],
)
def test_wrong_route_or_method(live, http, record_property, method, path, status, reason) -> None:
    reply = http.request(method, path)
    record_property("bad_inputs", 1)
    assert reply.status_code == status
    assert reason in reply.json()["error"]
    assert_healthy(live.url)


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"queries"',  # then hang up
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # a TLS hello
        b"POST /search HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["garbage", "bad-content-length", "hang-up-mid-body", "tls-hello", "huge-header"],
)
def test_protocol_garbage_does_not_hurt_the_server(live, record_property, raw) -> None:
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):  # the server may hang up first
            answer = b""
    record_property("bad_inputs", 1)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert_healthy(live.url)


# A JSON value of any shape, and bodies that are close to valid.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
NEAR_VALID = st.fixed_dictionaries(
    {"queries": st.one_of(JSON_VALUES, st.lists(JSON_VALUES, max_size=10))},
    optional={"k": st.one_of(st.integers(-5, 40), JSON_VALUES)},
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    NEAR_VALID.map(lambda v: json.dumps(v).encode()),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES)
def test_property_any_body_gets_results_or_a_4xx(live, http, record_property, body) -> None:
    reply = http.post("/search", content=body)
    assert reply.status_code in (200, 400, 413, 422), reply.text
    try:
        parse_search(body, ServerSettings(**BOUNDS))
        valid = len(body) <= BOUNDS["max_body_bytes"]
    except Exception:  # noqa: BLE001 - the server must have refused exactly these
        valid = False
    assert (reply.status_code == 200) == valid, (body, reply.text)
    if valid:
        payload = json.loads(body)
        results = reply.json()["results"]
        assert len(results) == len(payload["queries"])
        assert all(len(row) <= payload.get("k", 10) for row in results)
    else:
        record_property("bad_inputs", 1)
        assert "\n" not in reply.json()["error"]


def test_server_is_healthy_after_all_bad_input(live) -> None:
    assert_healthy(live.url)
    with client(live.url) as c:
        stats = c.get("/stats").json()
    assert stats["failed"] == 0 and stats["rejected"] > 0


# ------------------------------------------------------------------------- faults inside
class Exploding:
    """A retriever whose decode raises when it meets the query 'explode'."""

    def __init__(self, inner: Retriever, delay: float = 0.0) -> None:
        self.inner = inner
        self.num_docs = inner.num_docs
        self.num_beams = inner.num_beams
        self.delay = delay
        self.calls = 0

    def search(self, queries, k=10, batch_size=32):
        self.calls += 1
        time.sleep(self.delay)
        if "explode" in queries:
            raise RuntimeError("the model exploded\nwith a second line")
        return self.inner.search(queries, k=k, batch_size=batch_size)


def test_decoding_error_is_a_500_for_that_request_only(index_dir, reference) -> None:
    backend = Exploding(Retriever.load(index_dir, device="cpu"))
    good = [["river stone"], ["amber birch", "quartz"], ["cedar"]]
    # max_batch = all five queries: the batch closes when the last request arrives, so the four
    # requests are decoded together (the 10 s wait is only an upper bound).
    bounds = {**BOUNDS, "max_batch": 5, "max_wait_ms": 10_000}
    app = create_app(backend, ServerSettings(**bounds))

    async def send(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as c:
            bodies = [{"queries": ["explode"], "k": 4}] + [{"queries": q, "k": 4} for q in good]
            return await asyncio.gather(*(c.post("/search", json=b) for b in bodies))

    with LiveServer(app) as server:
        bad, *fine = asyncio.run(send(server.url))
        assert bad.status_code == 500
        assert bad.json()["error"] == (
            "Decoding failed: RuntimeError: the model exploded with a second line"
        )
        for queries, reply in zip(good, fine, strict=True):
            assert reply.status_code == 200, reply.text
            assert_same(reply.json()["results"], reference.search(queries, k=4))
        assert backend.calls == 5, "one batched call, then one call per request after it failed"
        assert_healthy(server.url)
        with client(server.url) as c:  # five queries fill a batch: no waiting
            again = c.post("/search", json={"queries": ["explode", "a", "b", "c", "d"]})
            assert again.status_code == 500
            ok = c.post("/search", json={"queries": ["river", "stone", "a", "b", "c"], "k": 2})
            assert ok.status_code == 200
            assert c.get("/stats").json()["failed"] == 2


def test_full_queue_answers_503_and_recovers(index_dir) -> None:
    backend = Exploding(Retriever.load(index_dir, device="cpu"), delay=0.5)
    bounds = {**BOUNDS, "max_queries": 2, "max_pending": 3, "max_wait_ms": 0}
    app = create_app(backend, ServerSettings(**bounds))

    async def send(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as c:
            first = asyncio.ensure_future(c.post("/search", json={"queries": ["a", "b"]}))
            while (await c.get("/stats")).json()["pending"] < 2:  # until it is decoding
                await asyncio.sleep(0.01)
            second = await c.post("/search", json={"queries": ["c", "d"]})
            return [await first, second]

    with LiveServer(app) as server:
        first, second = asyncio.run(send(server.url))
        assert first.status_code == 200
        assert second.status_code == 503
        assert "pending queries (at most 3); retry shortly" in second.json()["error"]
        with client(server.url) as c:
            assert c.post("/search", json={"queries": ["c", "d"]}).status_code == 200


def test_client_that_gives_up_does_not_stall_the_worker(index_dir) -> None:
    backend = Exploding(Retriever.load(index_dir, device="cpu"), delay=0.4)
    with LiveServer(create_app(backend, ServerSettings(**BOUNDS))) as server:
        with client(server.url, timeout=0.1) as impatient, pytest.raises(httpx.TimeoutException):
            impatient.post("/search", json={"queries": ["river"]})
        with client(server.url) as c:
            reply = c.post("/search", json={"queries": ["river"], "k": 2})
        assert reply.status_code == 200 and len(reply.json()["results"][0]) == 2


def test_max_batch_closes_a_batch_early(index_dir, reference) -> None:
    """With max_batch=2, four one-query requests make exactly two decode calls of two, however
    long the wait bound (it is only an upper bound)."""
    retriever = Retriever.load(index_dir, device="cpu")
    app = create_app(retriever, ServerSettings(max_batch=2, max_wait_ms=5_000, **BOUNDS))
    queries = ["river", "stone", "amber", "birch"]

    async def send(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as c:
            return await asyncio.gather(
                *(c.post("/search", json={"queries": [q], "k": 3}) for q in queries)
            )

    with LiveServer(app) as server:
        started = time.monotonic()
        replies = asyncio.run(send(server.url))
        assert time.monotonic() - started < 4, "full batches do not wait for the bound"
        for query, reply in zip(queries, replies, strict=True):
            assert_same(reply.json()["results"], reference.search([query], k=3))
        with client(server.url) as c:
            stats = c.get("/stats").json()
    assert (stats["decode_batches"], stats["largest_batch"]) == (2, 2)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_k must be at least 1"):
        ServerSettings(max_k=0)
    with pytest.raises(ValueError, match="max_wait_ms cannot be negative"):
        ServerSettings(max_wait_ms=-1)
    with pytest.raises(ValueError, match="max_pending"):
        ServerSettings(max_pending=10, max_queries=64)


# ----------------------------------------------------------------------------- dsi serve
def _dsi(*args: str) -> subprocess.Popen:
    env = child_env(OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "dsi.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_dsi_serve_command(index_dir, reference) -> None:
    proc = _dsi("serve", "--index", str(index_dir), "--port", "0", "--max-k", "7", "--quiet")
    try:
        line = proc.stdout.readline()
        assert line, f"dsi serve printed nothing:\n{proc.stderr.read()}"
        ready = json.loads(line)
        assert ready["num_docs"] == N_DOCS and ready["serving"].startswith("http://127.0.0.1:")
        with client(ready["serving"]) as c:
            health = c.get("/health").json()
            assert health["status"] == "ok" and health["index"] == str(index_dir)
            reply = c.post("/search", json={"queries": ["river stone"], "k": 3})
            assert_same(reply.json()["results"], reference.search(["river stone"], k=3))
            assert c.post("/search", json={"queries": ["a"], "k": 8}).status_code == 422
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_dsi_serve_on_a_missing_index_fails_cleanly(tmp_path) -> None:
    proc = _dsi("serve", "--index", str(tmp_path / "nowhere"), "--port", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "dsi: error: There is no index directory" in err and "Traceback" not in err


def test_dsi_serve_on_a_busy_port_fails_cleanly(index_dir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = _dsi("serve", "--index", str(index_dir), "--port", port, "--quiet")
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"dsi: error: Cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_serve_without_the_extra_says_how_to_install(monkeypatch, capsys, tmp_path) -> None:
    from dsi.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    monkeypatch.delitem(sys.modules, "dsi.server")
    assert main(["serve", "--index", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs FastAPI and uvicorn, and fastapi is not installed" in err
    assert "pip install 'dsi[serve]'" in err


def test_cli_defaults_match_server_settings() -> None:
    from dsi.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command").choices["serve"]
    text = " ".join(sub.format_help().split()).split("options:", 1)[1]
    defaults = ServerSettings()
    for flag, name in [
        ("--max-batch", "max_batch"),
        ("--max-queries", "max_queries"),
        ("--max-query-chars", "max_query_chars"),
        ("--max-k", "max_k"),
        ("--max-body-bytes", "max_body_bytes"),
        ("--max-pending", "max_pending"),
        ("--batch-size", "batch_size"),
    ]:
        value = getattr(defaults, name)
        assert f"(default {value})" in text.split(flag, 1)[1].split(" --", 1)[0], flag
    assert "(default 5)" in text and defaults.max_wait_ms == 5.0
