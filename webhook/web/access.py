"""The web edge of :mod:`webhook.auth`: every request but hooks, health and sign-in is signed in first.

``/?token=…`` is the sign-in link ``./dev serve`` prints (as Jupyter's), and ``POST /signin``
the form's: a valid token becomes an HttpOnly, SameSite=Lax cookie (Secure behind HTTPS) and the
browser is sent on without the token in its address. A request the cookie (or an SSO proxy)
signs in must come from this site, with its CSRF token (:mod:`.csrf`), to change anything.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, redirect, request

from ..auth import METRICS, OPERATE, READ, Authenticator, Principal
from ..errors import Forbidden, Unauthorized
from . import csrf

COOKIE = "pushbuild_token"
#: Paths anyone may reach: the forges' deliveries (signed), the readiness probe, signing in and
#: the console's own scripts and styles.
PUBLIC_PREFIXES = ("/hooks/", "/static/")
PUBLIC_PATHS = frozenset({"/healthz", "/signin", "/signout"})
#: What a request without any credential is told (a browser gets the sign-in form instead).
SIGN_IN = "sign in: send Authorization: Bearer <token>"
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
    if scope == OPERATE and who.via != "token":  # a cookie, ours or an SSO proxy's, rides along
        if not _same_site():
            raise Forbidden("a browser may only change things from this site's own pages")
        if not csrf.valid():
            raise Forbidden("this form has expired or did not come from this site's pages: reload the page and try again")
    return who


def _same_site() -> bool:
    """Say whether a browser request comes from a page of this site.

    ``Sec-Fetch-Site``, which a browser sets and no page can, decides when it is there; else
    ``Origin`` must be this site's, as the request reached it or as ``public_url`` names it
    (behind a proxy that ends TLS, the request may say ``http://`` while the browser says ``https://``).
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    ours = {request.host_url.rstrip("/")}
    if public_url := current_app.extensions["pushbuild"].config.server.public_url:
        parts = urlsplit(public_url)
        ours.add(f"{parts.scheme}://{parts.netloc}")
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" in ours


def _unauthorized_message() -> str:
    if not _authenticator().configured:
        return ("no API tokens are configured, so only /hooks/* and /healthz answer; "
                "add one under [[auth.tokens]] (docs/security.md)")
    return SIGN_IN


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
    require(METRICS if request.path == "/metrics" else READ)  # auth.METRICS: a scraper's token reads /metrics only
    return None


def _sign_in(token: str, *, then: str = "/") -> Response:
    """Turn a token (``/?token=…`` or the form's) into a cookie and send the browser on (the token leaves the address)."""
    who = _authenticator().by_token(token, via="cookie")
    if who is None:
        raise Unauthorized("this token is not valid here" if token else "enter a token to sign in")
    if not who.may(READ):
        raise Forbidden(f"{who.name} may read /metrics only: it cannot sign in to the console")
    response = redirect(then, code=303)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address held the token
    current = request.cookies.get(COOKIE)
    if current and _authenticator().by_token(current) is not None and not _same_site():
        return response  # another site cannot swap the session a browser already has for its own token's
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Lax",
                        secure=secure_cookies(), path="/")
    return response


def sign_in_form() -> Response:
    """Sign in with the sign-in form's token, then go on to the page the form names."""
    if not _same_site():  # another site's form would sign this browser in as that site's user (login CSRF)
        raise Forbidden("sign in from this site's own sign-in page")
    return _sign_in(request.form.get("token", "").strip(), then=local_path(request.form.get("next")))


def sign_out() -> Response:
    """Forget the browser's session (its cookie) and send it to the sign-in page."""
    response = redirect("/signin", code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=secure_cookies())
    return response


def secure_cookies() -> bool:
    """Say whether cookies must be Secure: the request came over HTTPS, or the public URL is HTTPS."""
    public_url = current_app.extensions["pushbuild"].config.server.public_url or ""
    return request.is_secure or public_url.startswith("https://")


def local_path(path: str | None) -> str:
    """Return ``path`` if it is a path on this site (never ``//other.example`` or a URL), else ``/``.

    Only printable ASCII without spaces or backslashes: browsers and URL parsers drop tabs and
    newlines, and read ``\\`` as ``/``, which would turn ``/\t/evil.example`` into ``//evil.example``.
    """
    if not path or not all("!" <= c <= "~" and c != "\\" for c in path):
        return "/"
    parts = urlsplit(path)
    if not path.startswith("/") or path.startswith("//") or parts.scheme or parts.netloc:
        return "/"
    return path


def _after_request(response: Response) -> Response:
    csrf.set_cookie(response, secure=secure_cookies())
    if response.status_code == 401 and not request.path.startswith(PUBLIC_PREFIXES):  # nothing public asks for a token
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="pushbuild"')
    return response


def _me() -> Any:
    """Say who is signed in, with which scope, and where the API is."""
    who = require(READ)
    return jsonify(signed_in_as=who.name, scope=who.scope, builds_url="/api/builds",
                   can_operate=who.may(OPERATE))


def install(app: Flask, authenticator: Authenticator) -> None:
    """Make ``app`` sign in every request but the public ones."""
    app.extensions["pushbuild.auth"] = authenticator
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.add_url_rule("/api/me", "me", _me)
