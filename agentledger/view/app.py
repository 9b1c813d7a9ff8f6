"""The viewer's web application (Starlette): read-only pages over the event store.

Every route answers GET (and HEAD) only; the store is opened read-only by the caller and
nothing here writes to it. Pages are rendered on the server from the log (``pages``);
``/live`` is a server-sent event stream that announces new log positions by following the
store (``EventStore.subscribe``: LISTEN/NOTIFY on PostgreSQL, a read of the newest
positions on SQLite), never by watching files. Responses carry a content security policy
that allows only this server's own script and stylesheet, so even markup that escaped
escaping could not run. With a token, each request must present it (header, cookie, or
``?token=`` once, which sets the cookie).
"""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from agentledger.errors import AgentLedgerError
from agentledger.eventstore.store import EventStore
from agentledger.view import pages
from agentledger.view.errors import BadRequestError, NotFoundError
from agentledger.view.listing import log_point
from agentledger.view.render import STATIC, render

COOKIE = "agentledger_token"
LIVE_IDLE_SECONDS = 15.0
"""How long a live stream waits for an event before sending a keep-alive comment."""
LIVE_MIN_INTERVAL = 0.5
"""The shortest time between two announcements on one live stream."""
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def host_of(header: str) -> str:
    """The host name of a Host header, without its port (``[::1]:8765`` -> ``[::1]``)."""
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
    """ASGI middleware: security headers on every response, the Host check (against DNS
    rebinding, when the viewer listens on loopback) and the token check."""

    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: list[str] | None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        request = Request(scope)
        response: Response
        if self.allowed_hosts is not None:
            host = host_of(request.headers.get("host", "")).lower()
            if host not in self.allowed_hosts:
                response = Response(
                    f"agentledger view: Host {host!r} is not this viewer's address; open it "
                    "at the address it printed\n",
                    status_code=400,
                    media_type="text/plain",
                )
                await response(scope, receive, send_with_headers)
                return
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and self._valid(given):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                await response(scope, receive, send_with_headers)
                return
            header = request.headers.get("authorization", "")
            bearer = header[7:] if header.lower().startswith("bearer ") else ""
            if not (self._valid(bearer) or self._valid(request.cookies.get(COOKIE, ""))):
                response = Response(
                    "agentledger view: this viewer needs its access token; open the address "
                    "it printed (with ?token=...) or send 'Authorization: Bearer TOKEN'\n",
                    status_code=401,
                    media_type="text/plain",
                )
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)

    def _valid(self, given: str) -> bool:
        assert self.token is not None
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())


def create_app(
    store: EventStore,
    *,
    until: int | None = None,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The viewer over ``store`` (opened read-only by the caller), as of ``until``.
    ``allowed_hosts`` guards against DNS rebinding (the Host header must name one)."""
    ledger = pages.Ledger(store, until)
    points = _Points(ledger)

    def page(template: str, build: Callable[[Request, pages.Ledger], dict[str, Any]]) -> Any:
        def endpoint(request: Request) -> Response:
            pin, at = points.for_request(request)
            context = build(request, at)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "as_of"]
            here = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            return _html(template, at, {**context, "pin": pin, "here": here})

        return endpoint

    def query(request: Request, name: str) -> str:
        return request.query_params.get(name, "").strip()

    routes = [
        Route(
            "/",
            page(
                "list.html",
                lambda r, at: pages.list_page(
                    at,
                    kind=query(r, "kind"),
                    status=query(r, "status"),
                    q=query(r, "q"),
                    page=query(r, "page"),
                ),
            ),
        ),
        Route(
            "/experiments/{ref:path}/integrity",
            page(
                "integrity.html",
                lambda r, at: pages.integrity_fragment(
                    at, at.catalog.experiment_id(r.path_params["ref"])
                ),
            ),
        ),
        Route(
            "/experiments/{ref:path}",
            page(
                "experiment.html",
                lambda r, at: pages.experiment_page(
                    at,
                    r.path_params["ref"],
                    status=query(r, "status"),
                    persona=query(r, "persona"),
                    q=query(r, "q"),
                    page=query(r, "page"),
                ),
            ),
        ),
        Route(
            "/traces/{trace_id:path}",
            page("trace.html", lambda r, at: pages.trace_page(at, r.path_params["trace_id"])),
        ),
        Route(
            "/sessions/{session_id:path}",
            page("session.html", lambda r, at: pages.session_page(at, r.path_params["session_id"])),
        ),
        Route(
            "/diff",
            page(
                "diff.html",
                lambda r, at: pages.diff_page(
                    at,
                    query(r, "a"),
                    query(r, "b"),
                    changed=query(r, "changed") == "1",
                    page=query(r, "page"),
                ),
            ),
        ),
        Route("/live", _live_endpoint(ledger)),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]

    def failure(status: int, title: str) -> Any:
        def handler(request: Request, exc: Exception) -> Response:
            context = {"title": title, "message": str(exc), "live": "", "pin": None}
            return _html("error.html", ledger, context, status)

        return handler

    middleware = [Middleware(_Guard, token=token, allowed_hosts=allowed_hosts)]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            NotFoundError: failure(404, "Not found"),
            BadRequestError: failure(400, "Bad request"),
            AgentLedgerError: failure(500, "The log cannot be shown"),
        },
    )


class _Points:
    """The ledgers of the points in the log pages are asked for with ``?as_of=``
    (a position or a time), each with its own caches; the few most recent are kept."""

    LIMIT = 4

    def __init__(self, base: pages.Ledger) -> None:
        self.base = base
        self._ledgers: OrderedDict[int, pages.Ledger] = OrderedDict()
        self._lock = threading.Lock()

    def for_request(self, request: Request) -> tuple[int | None, pages.Ledger]:
        """(the pinned position or None, the ledger to read) for a request."""
        text = request.query_params.get("as_of", "").strip()
        if not text:
            return None, self.base
        from agentledger.eventstore.envelope import utc_now

        position = log_point(self.base.store, text, utc_now(), name="as_of")
        if self.base.until is not None and position > self.base.until:
            raise BadRequestError(
                f"as_of {text} is after this viewer's --as-of position {self.base.until}"
            )
        with self._lock:
            ledger = self._ledgers.get(position)
            if ledger is None:
                ledger = self._ledgers[position] = pages.Ledger(self.base.store, position)
            self._ledgers.move_to_end(position)
            while len(self._ledgers) > self.LIMIT:
                self._ledgers.popitem(last=False)
        return position, ledger


def _html(template: str, ledger: pages.Ledger, context: dict[str, Any], status: int = 200) -> Any:
    base = {"as_of": ledger.until, "position": ledger.top(), "live": ""}
    body = render(template, **{**base, **context})
    return Response(body, status_code=status, media_type="text/html; charset=utf-8")


def _live_endpoint(ledger: pages.Ledger) -> Callable[[Request], Any]:
    async def live(request: Request) -> Response:
        params = request.query_params
        after_text = params.get("after", "0")
        if not after_text.isdigit() or len(after_text) > 18:
            raise BadRequestError(f"after={after_text[:40]!r} is not a log position")
        if ledger.until is not None:
            raise BadRequestError("this viewer shows the log as of a fixed point: nothing is live")
        filters: dict[str, str] = {}
        if params.get("experiment"):
            filters["correlation_id"] = params["experiment"]
        elif params.get("stream"):
            filters["stream_id"] = params["stream"]
        stopped = threading.Event()

        def next_position(after: int) -> int | None:
            """Block until an event in scope commits after ``after`` (or the idle time
            passes, or the client left): the log's last position then, or None."""
            following = ledger.store.subscribe(
                after,
                poll_interval=0.25,
                idle_timeout=LIVE_IDLE_SECONDS,
                stop=stopped.is_set,
                **filters,
            )
            try:
                for _ in following:
                    return ledger.store.last_position()
                return None
            finally:
                getattr(following, "close", lambda: None)()  # ends the store's follow loop

        async def announce() -> AsyncIterator[str]:
            import anyio

            after = int(after_text)
            try:
                yield "retry: 2000\n\n"
                while not stopped.is_set():
                    position = await run_in_threadpool(next_position, after)
                    if position is None:
                        yield ": idle\n\n"
                        continue
                    after = position
                    yield f"data: {position}\n\n"
                    await anyio.sleep(LIVE_MIN_INTERVAL)
            finally:
                stopped.set()

        return StreamingResponse(
            announce(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
        )

    return live
