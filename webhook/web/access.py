"""The web edge of :mod:`webhook.auth`: every request but hooks and health is signed in first.

``/?token=…`` is the sign-in link ``./dev serve`` prints (as Jupyter's): a valid token becomes
an HttpOnly, SameSite=Strict cookie and the browser is sent on to ``/`` without it in the
address. A request the cookie signs in must come from this site to change anything.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, redirect, request

from ..auth import OPERATE, READ, Authenticator, Principal
from ..errors import Forbidden, Unauthorized

COOKIE = "pushbuild_token"
#: Paths anyone may reach: the forges' deliveries (signed) and the readiness probe.
PUBLIC_PREFIXES = ("/hooks/",)
PUBLIC_PATHS = frozenset({"/healthz"})
#: Twelve hours: a browser signed in at the start of a working day stays signed in through it.
COOKIE_MAX_AGE_S = 12 * 3600


def _authenticator() -> Authenticator:
    return current_app.extensions["pushbuild.auth"]


def principal() -> Principal | None:
    """Return who this request comes from (``None`` on public paths without a credential)."""
    return g.get("principal")


def require(scope: str) -> Principal:
    """Return the request's principal if it holds ``scope``, else raise 401 or 403."""
    who = principal()
    if who is None:
        raise Unauthorized(_unauthorized_message())
    if not who.may(scope):
        raise Forbidden(f"{who.name} has the {who.scope} scope; this needs {scope}")
    if scope != READ and who.via != "token" and not _same_site():  # a cookie, ours or an SSO proxy's, rides along
        raise Forbidden("a browser may only change things from this site's own pages")
    return who


def _same_site() -> bool:
    """Say whether a browser request comes from a page of this site (Origin, or Sec-Fetch-Site)."""
    origin = request.headers.get("Origin")
    if origin:
        parts = urlsplit(origin)
        return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")
    return request.headers.get("Sec-Fetch-Site") in ("same-origin", "none")


def _unauthorized_message() -> str:
    if not _authenticator().configured:
        return ("no API tokens are configured, so only /hooks/* and /healthz answer; "
                "add one under [[auth.tokens]] (docs/security.md)")
    return "sign in: send Authorization: Bearer <token>"


def _identify() -> Principal | None:
    auth = _authenticator()
    who = auth.by_authorization(request.headers.get("Authorization"))
    if who is None and request.headers.get("Authorization") is None:
        who = auth.by_proxy(request.remote_addr, request.headers)
        if who is None and (cookie := request.cookies.get(COOKIE)):
            who = auth.by_token(cookie, via="cookie")
    return who


def _before_request() -> Any:
    public = request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES)
    if public:
        if request.path in PUBLIC_PATHS:  # health says more to whoever signs in; a bad credential is no error
            g.principal = _identify()
        return None
    g.principal = _identify()
    if request.path == "/" and "token" in request.args:
        return _sign_in(request.args["token"])
    require(READ)
    return None


def _sign_in(token: str) -> Response:
    """Turn ``/?token=…`` into a cookie and send the browser on to ``/`` (the token leaves the address bar)."""
    who = _authenticator().by_token(token, via="cookie")
    if who is None:
        raise Unauthorized("this sign-in link's token is not valid here")
    response = redirect("/", code=303)
    current = request.cookies.get(COOKIE)
    if current and _authenticator().by_token(current) is not None and not _same_site():
        return response  # another site cannot swap the session a browser already has for its own token's
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Strict",
                        secure=request.is_secure, path="/")
    return response


def _after_request(response: Response) -> Response:
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    if response.status_code == 401 and not request.path.startswith(PUBLIC_PREFIXES):  # hooks: a signature's 401
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="pushbuild"')
    return response


def _index() -> Any:
    """Say who is signed in and where the API is (the web console comes here later)."""
    who = require(READ)
    return jsonify(signed_in_as=who.name, scope=who.scope, builds_url="/api/builds",
                   can_operate=who.may(OPERATE))


def install(app: Flask, authenticator: Authenticator) -> None:
    """Make ``app`` sign in every request but the public ones."""
    app.extensions["pushbuild.auth"] = authenticator
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.add_url_rule("/", "index", _index)
