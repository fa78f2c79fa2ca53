"""The dashboard's pages as a Starlette app, mounted at ``/dashboard`` by backoffice/app.py.

Every page but the login page needs a staff session (a cookie; a terminal's bearer token
is ignored here), every POST the session's CSRF token. Database work runs in worker
threads (at most ``DB_THREADS`` at once), so the sync protocol's requests on the same
server never wait behind a page. This module must never log a password, a cookie value
or a CSRF token.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..silence import SilenceConfig
from ..store import BackofficeStore
from . import alerts as alert_data
from . import fleet, reconciliation
from .security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    FormError,
    read_form,
    same_origin,
    set_cookie,
    tokens_match,
    with_security_headers,
)
from .sessions import ABSOLUTE_TIMEOUT_S, Session, SessionStore
from .staff import MAX_PASSWORD_CHARS, StaffAccounts
from .terminal import terminal_page

log = logging.getLogger("posedge.backoffice.dashboard")

HERE = Path(__file__).parent
DB_THREADS = 2
LOGIN_CSRF_MAX_AGE_S = 3600
PREFIX = "/dashboard"

_T = TypeVar("_T")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _safe_next(value: str | None) -> str:
    """A redirect target inside the dashboard (never another site: no ``//``, no scheme)."""
    if value and value.startswith(PREFIX + "/") and "//" not in value and "\\" not in value:
        return value
    return PREFIX + "/"


class Dashboard:
    """The dashboard's handlers, bound to one store."""

    def __init__(
        self,
        store: BackofficeStore,
        silence: SilenceConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.silence = silence or SilenceConfig()
        self.clock = clock
        self.sessions = SessionStore(store, clock)
        self.accounts = StaffAccounts(store)
        self._limiter: anyio.CapacityLimiter | None = None
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["age"] = _age
        self.env.globals.update(prefix=PREFIX, state_labels=fleet.STATE_LABELS, states=fleet.STATES)

    async def _db(self, call: Callable[..., _T], *args: Any) -> _T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(DB_THREADS)
        return await anyio.to_thread.run_sync(call, *args, limiter=self._limiter)

    def render(
        self, name: str, status: int = 200, headers: dict[str, str] | None = None, **ctx: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, status: int, message: str, session: Session | None = None) -> HTMLResponse:
        return self.render("error.html", status, session=session, code=status, message=message)

    async def _session(self, request: Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        return await self._db(self.sessions.lookup, cookie)

    def _to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(_safe_next(target))}", 303)

    async def _post(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        """A POST's session and form, after the CSRF check (else the error response)."""
        session = await self._session(request)
        if session is None:
            return self.error(403, "your session has ended: log in again, then retry")
        if not same_origin(request):
            return self.error(403, "the form came from another site; use the dashboard's own")
        try:
            form = await read_form(request)
        except FormError as exc:
            return self.error(400, str(exc), session)
        if not tokens_match(form.get("csrf"), session.csrf_token):
            return self.error(
                403, "the form's CSRF token is missing or stale: reload the page and retry",
                session,
            )  # fmt: skip
        return session, form

    # -- login ---------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self._login_form(request, 200, "")

    def _login_form(
        self,
        request: Request,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        username: str = "",
    ) -> Response:
        token = secrets.token_urlsafe(32)
        response = self.render(
            "login.html", status, headers, csrf=token, message=message, username=username,
            next=_safe_next(request.query_params.get("next")), session=None,
        )  # fmt: skip
        set_cookie(response, request, LOGIN_CSRF_COOKIE, token, LOGIN_CSRF_MAX_AGE_S)
        return response

    async def login(self, request: Request) -> Response:
        if not same_origin(request):
            return self.error(403, "the form came from another site; use the dashboard's own")
        try:
            form = await read_form(request)
        except FormError as exc:
            return self.error(400, str(exc))
        if not tokens_match(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
            return self._login_form(
                request, 403, "the login form expired (or cookies are off): try again"
            )
        username = form.get("username", "").strip()[:64]
        password = form.get("password", "")[:MAX_PASSWORD_CHARS]
        address = request.client.host if request.client else "-"
        if not username or not password:
            return self._login_form(
                request, 400, "give your user name and password", username=username
            )
        wait = await self._db(self.sessions.retry_after, username, address)
        if wait > 0:
            return self._login_form(
                request, 429,
                f"too many failed logins: try again in {int(wait) + 1} s",
                headers={"Retry-After": str(int(wait) + 1)}, username=username,
            )  # fmt: skip
        ok = await self._db(self.accounts.authenticate, username, password)
        if not ok:
            await self._db(self.sessions.record_failure, username, address)
            log.warning("dashboard login failed", extra={"user": username, "client": address})
            return self._login_form(request, 401, "wrong user name or password", username=username)
        await self._db(self.sessions.clear_failures, username)
        cookie, _ = await self._db(self.sessions.create, username)
        log.info("dashboard login", extra={"user": username, "client": address})
        response = RedirectResponse(_safe_next(form.get("next")), 303)
        set_cookie(response, request, SESSION_COOKIE, cookie, int(ABSOLUTE_TIMEOUT_S))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request) -> Response:
        checked = await self._post(request)
        if isinstance(checked, Response):
            return checked
        cookie = request.cookies.get(SESSION_COOKIE, "")
        await self._db(self.sessions.end, cookie)
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_login(request)
        params = request.query_params
        state = params.get("state", "")
        search = params.get("q", "")
        try:
            page_no = int(params.get("page", "1"))
        except ValueError:
            return self.error(400, "page must be a whole number, e.g. page=2", session)
        try:
            page = await self._db(fleet.overview, self.store, self.clock(), state, search, page_no)
        except fleet.FilterError as exc:
            return self.error(400, str(exc), session)
        return self.render("overview.html", session=session, page=page, state=state, q=search)

    async def terminal(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_login(request)
        terminal = request.path_params["terminal"]
        page = await self._db(terminal_page, self.store, terminal, self.clock(), self.silence)
        if page is None:
            return self.error(404, f"no terminal {terminal[:120]!r} in this back office", session)
        return self.render("terminal.html", session=session, t=page, now=self.clock())

    async def alerts(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_login(request)
        view = request.query_params.get("view", "open")
        try:
            page_no = int(request.query_params.get("page", "1"))
            if page_no < 1:
                raise ValueError
        except ValueError:
            return self.error(400, "page must be a whole number from 1, e.g. page=2", session)
        try:
            rows, total = await self._db(alert_data.list_alerts, self.store, view, page_no)
        except alert_data.AckError as exc:
            return self.error(400, str(exc), session)
        pages = max(1, -(-total // alert_data.ALERTS_PER_PAGE))
        return self.render(
            "alerts.html", session=session, alerts=rows, view=view, views=alert_data.VIEWS,
            page=page_no, pages=pages, total=total,
        )  # fmt: skip

    async def acknowledge(self, request: Request) -> Response:
        checked = await self._post(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        fingerprint = form.get("fingerprint", "")
        try:
            await self._db(
                alert_data.acknowledge, self.store, fingerprint, session.username, self.clock()
            )
        except alert_data.AckError as exc:
            return self.error(409, str(exc), session)
        log.info("alert acknowledged", extra={"user": session.username, "alert": fingerprint})
        return RedirectResponse(_safe_next(form.get("next") or f"{PREFIX}/alerts"), 303)

    async def reconciliation(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_login(request)
        day = request.query_params.get("day", "")
        summaries = await self._db(reconciliation.days, self.store)
        closes: list[dict[str, Any]] = []
        if not day and summaries:
            day = summaries[0].day
        if day:
            try:
                closes = await self._db(reconciliation.closes_on, self.store, day)
            except reconciliation.DayError as exc:
                return self.error(400, str(exc), session)
        return self.render("reconciliation.html", session=session, days=summaries, day=day,
                           closes=closes)  # fmt: skip


def create_dashboard(store: BackofficeStore, silence: SilenceConfig | None = None) -> ASGIApp:
    """The dashboard app (mount it at ``/dashboard``); every response carries the security
    headers."""
    board = Dashboard(store, silence)

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return board.error(405, f"{request.method} is not allowed here")
        return board.error(404, f"no page {request.url.path[:120]!r}: start at {PREFIX}/")

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("dashboard error on %s: %s", request.url.path, type(exc).__name__)
        return board.error(500, "internal error; see the back office log")

    app = Starlette(
        routes=[
            Route("/", board.overview, methods=["GET"]),
            Route("/login", board.login_page, methods=["GET"]),
            Route("/login", board.login, methods=["POST"]),
            Route("/logout", board.logout, methods=["POST"]),
            Route("/terminals/{terminal:path}", board.terminal, methods=["GET"]),
            Route("/alerts", board.alerts, methods=["GET"]),
            Route("/alerts/ack", board.acknowledge, methods=["POST"]),
            Route("/reconciliation", board.reconciliation, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={HTTPException: not_found, Exception: internal},
    )
    app.state.dashboard = board
    return with_security_headers(app)
