"""HTTP query service: ``POST /search`` ranks documents for a batch of queries (FastAPI + uvicorn).

Concurrent requests are micro-batched: one worker coroutine takes requests off a queue for at
most ``max_wait_ms`` (or until ``max_batch`` queries are gathered) and decodes them together, so
sixteen clients sending one query each cost about one batched decode instead of sixteen. The
model runs on a single decode thread, so it is never used by two requests at once.

Every request is bounded (body bytes, queries, characters per query, k) and every problem is
answered with a 4xx and ``{"error": "<one sentence>"}``; a failure inside decoding is a 500 for
the requests it touched, and the server goes on serving.

Needs the ``serve`` extra: ``pip install 'dsi[serve]'``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

import dsi

log = logging.getLogger(__name__)

_FIELDS = ("queries", "k")


class SearchBackend(Protocol):
    """What the server needs of a :class:`dsi.retriever.Retriever`."""

    num_docs: int

    def search(self, queries: Sequence[str], k: int = 10, batch_size: int = 32) -> list[list[Any]]:
        """Ranked hits (objects with ``doc_id`` and ``score``) per query."""
        ...


@dataclass(frozen=True)
class ServerSettings:
    """Bounds and batching knobs of the query service; the defaults suit a CPU."""

    max_body_bytes: int = 1 << 20
    max_queries: int = 64  # per request
    max_query_chars: int = 2000
    max_k: int = 100
    max_batch: int = 32  # queries gathered into one decode
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_pending: int = 1024  # queries queued or decoding before new requests get a 503
    batch_size: int = 32  # Retriever.search batch size
    index_path: str | None = None  # shown by /health

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_queries", "max_query_chars", "max_k", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"Server setting {name} must be at least 1.")
        if self.batch_size < 1 or self.max_pending < 1:
            raise ValueError("Server settings batch_size and max_pending must be at least 1.")
        if self.max_wait_ms < 0:
            raise ValueError("Server setting max_wait_ms cannot be negative.")
        if self.max_pending < self.max_queries:
            raise ValueError(
                f"Server setting max_pending ({self.max_pending}) must be at least max_queries "
                f"({self.max_queries}), or the largest requests could never be queued."
            )


@dataclass
class ServerStats:
    """Counters shown by ``GET /stats``."""

    requests: int = 0  # /search requests answered with results
    queries: int = 0  # queries answered
    rejected: int = 0  # /search requests refused with a 4xx or 503
    failed: int = 0  # /search requests that got a 500
    decode_batches: int = 0  # retriever.search calls
    largest_batch: int = 0  # most queries decoded by one call
    decode_seconds: float = 0.0
    started: float = field(default_factory=time.time)


class BadRequest(Exception):
    """A request the client must fix; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Busy(Exception):
    """The server holds more pending queries than ``max_pending``; the client may retry."""


@dataclass
class _Request:
    queries: list[str]
    k: int
    future: asyncio.Future


class MicroBatcher:
    """Gathers concurrent requests into batched ``search`` calls on one decode thread."""

    def __init__(self, retriever: SearchBackend, settings: ServerSettings, stats: ServerStats):
        self.retriever = retriever
        self.settings = settings
        self.stats = stats
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._held: _Request | None = None  # the request that did not fit the last batch
        self._pending = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsi-decode")
        self._task: asyncio.Task | None = None

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dsi-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        waiting = [self._held] if self._held else []
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for request in waiting:
            if not request.future.done():
                request.future.set_exception(Busy("The server is shutting down."))
        self._executor.shutdown(wait=True)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---------------------------------------------------------------- requests
    async def submit(self, queries: list[str], k: int) -> list[list[Any]]:
        """Queue one request and wait for its hits (one list per query)."""
        if not self.alive:
            raise Busy("The decode worker is not running.")
        if self._pending + len(queries) > self.settings.max_pending:
            raise Busy(
                f"The server already holds {self._pending} pending queries "
                f"(at most {self.settings.max_pending}); retry shortly."
            )
        future = asyncio.get_running_loop().create_future()
        self._pending += len(queries)
        try:
            self._queue.put_nowait(_Request(queries, k, future))
            return await future
        finally:
            self._pending -= len(queries)

    # ------------------------------------------------------------------ worker
    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            try:
                await self._decode(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not stop the worker for good
                log.exception("Batch decoding failed unexpectedly.")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)

    async def _gather(self) -> list[_Request]:
        """The next batch: the first request, then whatever arrives within the wait bound."""
        loop = asyncio.get_running_loop()
        first, self._held = self._held or await self._queue.get(), None
        batch, size = [first], len(first.queries)
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while size < self.settings.max_batch:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                request = self._queue.get_nowait()
            if size + len(request.queries) > self.settings.max_batch:
                self._held = request  # it opens the next batch
                break
            batch.append(request)
            size += len(request.queries)
        return batch

    async def _decode(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # a cancelled client is skipped
        groups: dict[int, list[_Request]] = {}
        for request in live:
            groups.setdefault(self._beam_key(request.k), []).append(request)
        for group in groups.values():
            try:
                await self._decode_group(group)
            except Exception as exc:
                if len(group) == 1:
                    _fail(group[0], exc)
                    continue
                # One bad request must not fail its neighbours: decode each on its own.
                log.warning(
                    "A batch of %d requests failed (%s); retrying one by one.", len(group), exc
                )
                for request in group:
                    try:
                        await self._decode_group([request])
                    except Exception as single:
                        _fail(request, single)

    def _beam_key(self, k: int) -> int:
        """Requests whose k gives the same beam width decode identically up to truncation.

        Mirrors ``Retriever.search``: beams = max(num_beams, min(k, num_docs)); a backend without
        ``num_beams`` is grouped by k itself.
        """
        beams = getattr(self.retriever, "num_beams", None)
        if isinstance(beams, int):
            return max(beams, min(k, self.retriever.num_docs))
        return k

    async def _decode_group(self, group: list[_Request]) -> None:
        queries = [q for request in group for q in request.queries]
        k = max(request.k for request in group)
        started = time.perf_counter()
        self.stats.decode_batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(queries))
        hits = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._search, queries, k
        )
        self.stats.decode_seconds += time.perf_counter() - started
        if len(hits) != len(queries):
            raise RuntimeError(f"search returned {len(hits)} results for {len(queries)} queries")
        start = 0
        for request in group:
            end = start + len(request.queries)
            if not request.future.done():
                request.future.set_result([row[: request.k] for row in hits[start:end]])
            start = end

    def _search(self, queries: list[str], k: int) -> list[list[Any]]:
        return self.retriever.search(queries, k=k, batch_size=self.settings.batch_size)


def _fail(request: _Request, exc: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


# ------------------------------------------------------------------------------ validation
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, f"Content-Length {declared!r} is not a byte count.")
        if int(declared) > limit:
            raise BadRequest(
                413, f"The request body has {int(declared)} bytes, more than the limit of {limit}."
            )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadRequest(
                    413, f"The request body is larger than the limit of {limit} bytes."
                )
    except ClientDisconnect:
        raise BadRequest(400, "The client hung up before sending the whole body.") from None
    return bytes(body)


def parse_search(body: bytes, settings: ServerSettings) -> tuple[list[str], int]:
    """Validate a ``/search`` body; return (queries, k) or raise :class:`BadRequest`."""
    if not body.strip():
        raise BadRequest(400, 'The request body is empty; send {"queries": ["..."], "k": 10}.')
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise BadRequest(400, f"The request body is not valid JSON ({detail}).") from None
    if not isinstance(payload, dict):
        raise BadRequest(400, f"The request body must be a JSON object, not {_json_type(payload)}.")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise BadRequest(400, f"Unknown field {unknown[0]!r}; /search takes 'queries' and 'k'.")
    if "queries" not in payload:
        raise BadRequest(400, "The field 'queries' is missing; give a list of query strings.")
    queries = payload["queries"]
    if not isinstance(queries, list):
        raise BadRequest(400, f"'queries' must be a list of strings, not {_json_type(queries)}.")
    if not queries:
        raise BadRequest(400, "'queries' is empty; give at least one query.")
    if len(queries) > settings.max_queries:
        raise BadRequest(
            422,
            f"{len(queries)} queries in one request, more than the limit of "
            f"{settings.max_queries}.",
        )
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise BadRequest(400, f"Query {i} must be a string, not {_json_type(query)}.")
        if not query.strip():
            kind = "empty" if not query else "only whitespace"
            raise BadRequest(422, f"Query {i} is {kind}; give something to search for.")
        if len(query) > settings.max_query_chars:
            raise BadRequest(
                422,
                f"Query {i} has {len(query)} characters, more than the limit of "
                f"{settings.max_query_chars}.",
            )
        try:
            query.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(
                400, f"Query {i} is not valid Unicode: it holds an unpaired surrogate escape."
            ) from None
    k = payload.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool):
        raise BadRequest(400, f"'k' must be an integer, not {_json_type(k)}.")
    if not 1 <= k <= settings.max_k:
        raise BadRequest(422, f"'k' must be between 1 and {settings.max_k}, got {k}.")
    return queries, k


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    names.update({int: "an integer", float: "a number", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# ------------------------------------------------------------------------------------ app
_SEARCH_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["queries"],
                "properties": {
                    "queries": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "k": {"type": "integer", "minimum": 1, "default": 10},
                },
            },
            "example": {"queries": ["which town is famous for copper bells"], "k": 10},
        }
    },
}


def create_app(retriever: SearchBackend, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``retriever``; run it with uvicorn (one worker)."""
    settings = settings or ServerSettings()
    stats = ServerStats()
    batcher = MicroBatcher(retriever, settings, stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="dsi query service",
        version=dsi.__version__,
        description="Generative retrieval: ranked document ids for queries.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stats = stats
    app.state.batcher = batcher

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"There is no endpoint {request.url.path}; try POST /search or GET /health."
        elif exc.status_code == 405:
            message = f"{request.url.path} does not accept {request.method}."
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"The request is invalid: {exc.errors()[0].get('msg', 'bad input')}.")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unhandled error on %s %s", request.method, request.url.path)
        return _error(500, f"Internal error: {type(exc).__name__}: {_one_line(exc)}")

    @app.post("/search", openapi_extra={"requestBody": _SEARCH_BODY})
    async def search(request: Request) -> JSONResponse:
        """Ranked ``{"doc_id", "score"}`` per query, best first. Higher scores are better and
        compare only within one query: for n-gram indexes (the default) a BM25-based sum over the
        n-grams the model generated and their words, for docid indexes the docid's
        log-probability."""
        try:
            body = await read_body(request, settings.max_body_bytes)
            queries, k = parse_search(body, settings)
        except BadRequest as exc:
            stats.rejected += 1
            return _error(exc.status, exc.message)
        try:
            hits = await batcher.submit(queries, k)
        except Busy as exc:
            stats.rejected += 1
            return _error(503, str(exc))
        except Exception as exc:
            stats.failed += 1
            return _error(500, f"Decoding failed: {type(exc).__name__}: {_one_line(exc)}")
        stats.requests += 1
        stats.queries += len(queries)
        results = [[{"doc_id": h.doc_id, "score": float(h.score)} for h in row] for row in hits]
        return JSONResponse({"results": results})

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness and what is being served."""
        ok = batcher.alive
        return JSONResponse(
            {
                "status": "ok" if ok else "unavailable",
                "num_docs": int(retriever.num_docs),
                "index": settings.index_path,
                "version": dsi.__version__,
                "decode_batches": stats.decode_batches,
            },
            status_code=200 if ok else 503,
        )

    @app.get("/stats")
    async def get_stats() -> JSONResponse:
        """Request, query and decode-batch counters since start, and the settings in force."""
        counters = asdict(stats)
        counters["uptime_seconds"] = round(time.time() - counters.pop("started"), 3)
        counters["decode_seconds"] = round(counters["decode_seconds"], 4)
        counters["pending"] = batcher._pending
        return JSONResponse({**counters, "settings": asdict(settings)})

    return app


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or "no detail"


# ---------------------------------------------------------------------------------- serve
def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it back with ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    retriever: SearchBackend,
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> bool:
    """Serve until SIGINT/SIGTERM; print one JSON line with the URL once the socket listens.

    Returns False when the server could not start (the reason is in the log).
    """
    import uvicorn

    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    app = create_app(retriever, settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))
    ready = {
        "serving": f"http://{shown}:{bound_port}",
        "index": settings.index_path,
        "num_docs": int(retriever.num_docs),
    }
    # Connections made before uvicorn accepts wait in the listen backlog, so this is safe to act on.
    print(json.dumps(ready), flush=True)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits this way when the app's startup fails
        return False
    finally:
        sock.close()
    return server.started
