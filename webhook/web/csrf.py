"""Cross-site request forgery tokens for what a browser changes (double-submit).

Every console page carries the value of a random ``pushbuild_csrf`` cookie in its forms; a
request a cookie or an SSO proxy signs in may change something only if it sends that value back
(form field ``csrf`` or header ``X-CSRF-Token``), which another site can neither read nor set.
Requests with a bearer token need none: a browser never sends one by itself.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Response, g, request

COOKIE = "pushbuild_csrf"
FIELD = "csrf"
HEADER = "X-CSRF-Token"


def token() -> str:
    """Return this browser's CSRF token for a form, making one (set by :func:`set_cookie`) if it has none."""
    current = request.cookies.get(COOKIE, "")
    if len(current) >= 32:
        return current
    if "new_csrf" not in g:
        g.new_csrf = secrets.token_urlsafe(32)
    return g.new_csrf


def valid() -> bool:
    """Say whether the request sends back the token of its own cookie."""
    expected = request.cookies.get(COOKIE, "")
    sent = request.headers.get(HEADER) or (request.form.get(FIELD, "") if request.mimetype in (
        "application/x-www-form-urlencoded", "multipart/form-data") else "")
    return len(expected) >= 32 and hmac.compare_digest(sent.encode(), expected.encode())


def set_cookie(response: Response, *, secure: bool) -> None:
    """Give the browser the token a page's forms carry, if this request made one."""
    if "new_csrf" in g:
        response.set_cookie(COOKIE, g.new_csrf, httponly=True, samesite="Lax", secure=secure, path="/")
