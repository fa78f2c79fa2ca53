"""The dashboard's HTTP hardening: security headers on every response (pages, static files,
errors), the session cookie's attributes, CSRF tokens, and the POST form reader.

CSP: nothing inline — the pages load one CSS file and one small script from ``/dashboard/
static/`` — so ``script-src 'self'`` and ``style-src 'self'`` forbid every injected script
and style. CSRF: every POST carries the session's token in a hidden field (the login form,
before any session, a token from a short-lived cookie: double submit), checked with a
constant-time comparison; SameSite=Strict cookies and the Origin check are further layers.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
SESSION_COOKIE = "posedge_session"
LOGIN_CSRF_COOKIE = "posedge_login_csrf"
MAX_FORM_BYTES = 8 * 1024


class FormError(ValueError):
    """A POST body that is not a small url-encoded form."""


def with_security_headers(app: ASGIApp) -> ASGIApp:
    """Every response of ``app`` gets :data:`SECURITY_HEADERS` (static files: cacheable)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if static and name == "cache-control":
                        headers[name] = "private, max-age=300"
                    else:
                        headers[name] = value
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, path /dashboard, Secure when served over TLS."""
    response.set_cookie(
        name, value, max_age=max_age, path="/dashboard", secure=is_tls(request),
        httponly=True, samesite="strict",
    )  # fmt: skip


def tokens_match(presented: str | None, expected: str | None) -> bool:
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def same_origin(request: Request) -> bool:
    """An Origin header, when the browser sends one, names this server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST (at most :data:`MAX_FORM_BYTES`); first value wins."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form is not valid UTF-8 url-encoded text") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form
