"""The web console: builds, a build's live log, repositories, signing in and out. Server-rendered.

Every page reads without scripts; ``static/console.js`` only makes it live (the builds list
refreshes, a running build's log streams as Server-Sent Events) and adds copy buttons. What a
page changes goes through :mod:`webhook.operations`, as the API's does, from forms that carry
the browser's CSRF token; a ``read`` scope sees those buttons disabled, with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request

from .. import ansi, defaults, forges, links, operations
from ..auth import OPERATE, READ
from ..errors import BadRequest, NotFound
from ..services import Services
from ..store import FINISHED, RETRYABLE, Build, BuildState
from ..worker import Dispatcher
from . import access, csrf, present, streams

bp = Blueprint("console", __name__)
#: Builds a page of the list shows.
PAGE_SIZE = 25
#: How much of a log a build's page shows at first (the rest: the raw log, or the API's pages).
LOG_VIEW_CHARS = 256 * 1024
#: How long a quiet live log waits before sending a keep-alive comment (proxies cut idle streams).
KEEP_ALIVE_S = 15.0
#: What an action's redirect may say, by key: a page never shows text from its address.
NOTICES = {
    "retried": "Queued to run again.",
    "cancelled": "Cancelled.",
    "rebuilt": "A new build of this commit is queued: it makes the commit's own tag again, and moves no branch tag.",
    "redelivered": "Queued to be sent again.",
    "started": "Queued.",
    "already": "That commit is already queued or building: here it is.",
}


def _services() -> Services:
    return current_app.extensions["pushbuild"]


def _dispatcher() -> Dispatcher:
    return current_app.extensions["pushbuild.dispatcher"]


def _base_url() -> str:
    return links.base_url(_services().config.server.public_url, request.host_url)


@bp.app_context_processor
def _page_context() -> dict[str, Any]:
    who = access.principal()
    return {"who": who, "can_operate": who is not None and who.may(OPERATE),
            "operate_reason": None if who is None or who.may(OPERATE) else
            f"{who.name} has the {who.scope} scope; this needs operate",
            "csrf_field": csrf.FIELD, "csrf_token": csrf.token, "marks": present.STATE_MARKS,
            "duration": present.duration, "age": lambda then: present.age(then, time.time()),
            "ref_name": present.ref_name, "iso": _iso, "elapsed": _duration}


def _iso(then: float | None) -> str:
    return "" if then is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(then))


# --- builds ------------------------------------------------------------------------------------------------

def _filters() -> dict[str, str]:
    """The list's filters from the query: repository, branch or tag, state (empty ones left out)."""
    wanted = {key: request.args.get(key, "").strip() for key in ("repo", "ref", "state")}
    if wanted["state"] and wanted["state"] not in {s.value for s in BuildState}:
        raise BadRequest(f"state must be one of {', '.join(s.value for s in BuildState)}")
    for key, value in wanted.items():
        if len(value) > defaults.MAX_REF_CHARS:
            raise BadRequest(f"{key} must be at most {defaults.MAX_REF_CHARS} characters")
    return {key: value for key, value in wanted.items() if value}


def _before_arg() -> int | None:
    raw = request.args.get("before", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(defaults.MAX_DATABASE_ID)):
        raise BadRequest("before must be a build id")
    return int(raw)


@bp.get("/")
def builds() -> Any:
    """Builds newest first, filtered and paged; ``?rows=1`` is just the rows, for the page's refresh."""
    access.require(READ)
    filters = _filters()
    before = _before_arg()
    page = _services().store.list(repo=filters.get("repo"), ref=filters.get("ref"),
                                  state=BuildState(filters["state"]) if "state" in filters else None,
                                  limit=PAGE_SIZE + 1, before_id=before)
    older = page[PAGE_SIZE - 1].id if len(page) > PAGE_SIZE else None
    rows = [(build, _commit_url(build)) for build in page[:PAGE_SIZE]]
    if request.args.get("rows") == "1":
        return render_template("_build_rows.html", rows=rows, filters=filters)
    return render_template("builds.html", nav="builds", rows=rows, filters=filters, before=before,
                           older_url=f"/?{urlencode({**filters, 'before': older})}" if older else None,
                           newest_url=f"/?{urlencode(filters)}" if before else None,
                           refresh_url=f"/?{urlencode({**filters, **({'before': before} if before else {}), 'rows': 1})}",
                           repos=_services().config.repos, states=[s.value for s in BuildState])


def _commit_url(build: Build) -> str | None:
    repo = _services().config.repo(build.forge, build.repo)
    if repo is None:
        return None
    return links.commit_url(repo.clone_url, forges.forge(repo.forge).commit_path, build.sha)


def _build(build_id: int) -> Build:
    build = _services().store.get(build_id)
    if build is None:
        raise NotFound(f"no build {build_id}")
    return build


@bp.get(f"/builds/<int(max={defaults.MAX_DATABASE_ID}):build_id>")
def build_page(build_id: int) -> Any:
    """One build: its phases, tags and digest, error, log (live while it runs), statuses and hooks."""
    access.require(READ)
    build = _build(build_id)
    store = _services().store
    text, cursor, earlier = store.log_tail(build_id, limit_chars=LOG_VIEW_CHARS)
    log_html, _style = ansi.to_html(_newlines(text))
    deliveries = _services().deliveries
    owed = [(d, deliveries.attempts(d.id)) for d in deliveries.of_build(build_id)]
    notice = NOTICES.get(request.args.get("done", ""))
    return render_template(
        "build.html", nav="builds", build=build, commit_url=_commit_url(build), log_html=log_html,
        log_cursor=cursor, log_earlier=earlier, live=build.state not in FINISHED, deliveries=owed,
        phases=present.phases(build.timings), notice=notice,
        retryable=build.state in RETRYABLE, cancellable=build.state not in FINISHED,
        rebuildable=build.state is BuildState.SUCCEEDED, duration_s=_duration(build),
        raw_log_url=f"/api/builds/{build_id}/log?limit={defaults.MAX_LOG_PAGE_CHARS}",
        ref_kind=present.ref_kind(build.ref))


def _duration(build: Build) -> float | None:
    if build.started_at is None:
        return None
    return (build.finished_at or time.time()) - build.started_at


def _newlines(text: str) -> str:
    """Carriage returns as newlines: HTML shows them so, and Server-Sent Events would end a line at them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@bp.get(f"/builds/<int(max={defaults.MAX_DATABASE_ID}):build_id>/events")
def build_events(build_id: int) -> Response:
    """The build's log as Server-Sent Events: ``log`` (rendered lines, the cursor as id), ``state``, ``end``.

    A reconnecting browser sends ``Last-Event-ID`` and the log resumes after what it has.
    """
    access.require(READ)
    build = _build(build_id)
    after = _cursor(request.headers.get("Last-Event-ID")) or _cursor(request.args.get("after")) or 0
    store = _services().store

    def events() -> Iterator[str]:
        yield f"retry: 2000\nevent: state\ndata: {build.state.value}\n\n"
        style = ansi.Style()
        state, quiet_since = build.state, time.monotonic()
        for text, cursor, now in streams.follow(store, build_id, after):
            if now is not state:
                state = now
                yield f"event: state\ndata: {state.value}\n\n"
            if text:
                rendered, style = ansi.to_html(_newlines(text), style)
                yield f"id: {cursor}\nevent: log\n" + "".join(f"data: {line}\n" for line in rendered.split("\n")) + "\n"
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEP_ALIVE_S:
                yield ": still here\n\n"
                quiet_since = time.monotonic()
        if state in FINISHED:  # else the follow ran out of time: the browser reconnects and resumes
            yield "event: end\ndata: \n\n"

    return Response(streams.holding_place(events()), mimetype="text/event-stream",
                    headers={"X-Accel-Buffering": "no"})


def _cursor(raw: str | None) -> int | None:
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= len(str(defaults.MAX_DATABASE_ID)):
        return int(raw)
    return None


def _done(build_id: int, notice: str) -> Response:
    return redirect(f"/builds/{build_id}?done={notice}", code=303)


@bp.post(f"/builds/<int(max={defaults.MAX_DATABASE_ID}):build_id>/retry")
def retry(build_id: int) -> Response:
    """Run a failed, skipped or cancelled build again (operate)."""
    who = access.require(OPERATE)
    operations.retry(_services(), _dispatcher(), build_id, by=who.name)
    return _done(build_id, "retried")


@bp.post(f"/builds/<int(max={defaults.MAX_DATABASE_ID}):build_id>/cancel")
def cancel(build_id: int) -> Response:
    """Cancel a queued or running build (operate)."""
    who = access.require(OPERATE)
    operations.cancel(_services(), build_id, by=who.name)
    return _done(build_id, "cancelled")


@bp.post(f"/builds/<int(max={defaults.MAX_DATABASE_ID}):build_id>/rebuild")
def rebuild(build_id: int) -> Response:
    """Build a succeeded build's commit again as a commit alone: its SHA tag and a status, no branch tag or hook (operate)."""
    who = access.require(OPERATE)
    build = _build(build_id)
    taken = operations.start_build(_services(), _dispatcher(), f"{build.forge}:{build.repo}", sha=build.sha,
                                   by=who.name)
    return _done(taken.builds[0].id, "rebuilt" if taken.created else "already")


@bp.post(f"/deliveries/<int(max={defaults.MAX_DATABASE_ID}):delivery_id>/redeliver")
def redeliver(delivery_id: int) -> Response:
    """Send a status or hook again (operate)."""
    who = access.require(OPERATE)
    delivery = operations.redeliver(_services(), delivery_id, by=who.name)
    return _done(delivery.build_id, "redelivered")


# --- repositories ------------------------------------------------------------------------------------------

@bp.get("/repos")
def repos() -> Any:
    """Each repository: its webhook address and the forge's steps, the last delivery, its rules, a build form."""
    access.require(READ)
    base = _base_url()
    heard = _services().last_deliveries.all((repo.forge, repo.name) for repo in _services().config.repos)
    shown = [{"repo": repo, "forge": forges.forge(repo.forge), "hook_url": links.hook_url(base, repo.forge),
              "web_url": links.web_url(repo.clone_url), "heard": heard.get((repo.forge, repo.name)),
              "rules": [rule.describe() for rule in repo.rules]}
             for repo in _services().config.repos]
    return render_template("repos.html", nav="repos", shown=shown, hooks_base=f"{base}/hooks/")


@bp.post("/repos/build")
def start_build() -> Response:
    """Build a branch's head or a tag of a configured repository, as a push would (operate)."""
    who = access.require(OPERATE)
    repo, kind, name = (request.form.get(key, "").strip() for key in ("repo", "kind", "name"))
    if not repo or not name:
        raise BadRequest("choose a repository and name a branch or tag")
    if kind not in ("branch", "tag") or len(name) > defaults.MAX_REF_CHARS:
        raise BadRequest(f"name a branch or a tag of at most {defaults.MAX_REF_CHARS} characters")
    taken = operations.start_build(_services(), _dispatcher(), repo, by=who.name,
                                   **({"tag": name} if kind == "tag" else {"ref": name}))
    return _done(taken.builds[0].id, "started" if taken.created else "already")


# --- signing in and out ------------------------------------------------------------------------------------

@bp.get("/signin")
def sign_in_page() -> Any:
    """The sign-in form (the link ``./dev serve`` prints signs in without it)."""
    return render_template("signin.html", next=access.local_path(request.args.get("next")), message=None)


@bp.post("/signin")
def sign_in() -> Response:
    """Sign a browser in with the token typed into the form."""
    return access.sign_in_form()


@bp.post("/signout")
def sign_out() -> Response:
    """Forget this browser's session (whatever its scope)."""
    if not csrf.valid():
        raise BadRequest("reload the page and sign out again")
    return access.sign_out()

