"""The last delivery each configured repository received from its forge, and what became of it.

Two rows per configured (forge, repository), each overwritten by the next of its kind: the last
*verified* delivery (signed with the repository's secret: accepted, duplicate, ignored) and the
last *refused* one, which anyone can send. What an operator setting up a webhook needs to see
("ping: ignored", "refused: the signature does not match"), and a stranger who knows a public
repository's name cannot make its real last delivery disappear.
Only configured repositories are noted, so strangers cannot grow the table. A delivery that
recorded builds is not noted at all: its newest build is read back as that repository's last
delivery (no second write on the webhook's path). Any other is noted at most once per
``REFUSED_NOTE_EVERY_S`` per repository and process, counted in memory, so a flood of refused or
replayed deliveries costs no database write each.

A refused delivery's body is never parsed (it is not verified): :func:`mentioned_repo` searches
it for the quoted name of a configured repository, so a wrong secret still shows on the
repository it was meant for. A body naming several is noted on the one named first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_to_bytes

import sqlalchemy as sa

from . import defaults
from .events import FORM_TYPE, media_type
from .outcomes import ACCEPTED
from .store import builds, metadata, upsert
from .timestamps import iso_time

log = logging.getLogger(__name__)

last_deliveries = sa.Table(
    "last_deliveries", metadata,
    sa.Column("forge", sa.String(32), primary_key=True),
    sa.Column("repo", sa.String(512), primary_key=True),
    #: Signed with the repository's own secret; a refused delivery's row is apart, so it never replaces this one.
    sa.Column("verified", sa.Boolean, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("delivery_id", sa.String(256)),
    sa.Column("event", sa.String(64)),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    #: The first build it recorded (no foreign key: retention prunes builds).
    sa.Column("build_id", sa.Integer),
)


@dataclass(frozen=True)
class LastDelivery:
    """What one repository last received from its forge, and what became of it."""

    forge: str
    repo: str
    #: When it arrived (Unix time).
    at: float
    #: The delivery id pushbuild deduplicates on (GitHub: hook id:delivery id), for verified pushes only.
    delivery_id: str | None
    #: ``push``, ``tag_push`` or ``ping`` when pushbuild knows; ``None`` for refused and other deliveries.
    event: str | None
    #: One word of :mod:`webhook.outcomes`: ``accepted``, ``ignored``, ``refused_signature``, ...
    outcome: str
    #: What became of it, for people: "build 12 queued", "ignored: ping", "refused: ...". Never a secret.
    detail: str
    build_id: int | None = None
    #: Signed with the repository's own secret (``False``: refused, and anyone could have sent it).
    verified: bool = True

    def to_json(self) -> dict[str, Any]:
        """Return the delivery as the API shows it."""
        return {"forge": self.forge, "repo": self.repo, "at": iso_time(self.at), "delivery_id": self.delivery_id,
                "event": self.event, "outcome": self.outcome, "detail": self.detail, "build": self.build_id,
                "verified": self.verified}


@dataclass(frozen=True)
class Heard:
    """What one repository last heard from its forge: its last verified delivery, and its last refused one."""

    last: LastDelivery | None = None
    refused: LastDelivery | None = None

    @property
    def refused_since(self) -> LastDelivery | None:
        """The last refused delivery when it came after the last verified one (a secret that stopped matching)."""
        if self.refused is None or (self.last is not None and self.last.at >= self.refused.at):
            return None
        return self.refused


class LastDeliveries:
    """Notes each configured repository's last delivery, and reads them back."""

    def __init__(self, db: sa.Engine, *, every_s: float = defaults.REFUSED_NOTE_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.every_s = every_s
        self.monotonic = monotonic
        self._last_noted: dict[tuple[str, str, bool], float] = {}
        self._lock = threading.Lock()

    def note(self, delivery: LastDelivery) -> bool:
        """Store ``delivery`` as its repository's last of its kind, unless one was noted too recently; say whether it was.

        Never raises: a delivery is answered whether or not its note is stored.
        """
        if not self._due(delivery.forge, delivery.repo, delivery.verified):
            return False
        try:
            with self.db.begin() as conn:
                upsert(conn, last_deliveries, _row(delivery), keys=("forge", "repo", "verified"))
        except Exception:
            log.warning("noting the last delivery of %s failed", delivery.repo, exc_info=True)
            return False
        return True

    def _due(self, forge: str, repo: str, verified: bool) -> bool:
        """Say whether a delivery may be noted for the repository now (and count it as noted).

        Verified and refused deliveries have a second each: a flood of refusals never delays the note of a ping.
        """
        now = self.monotonic()
        key = (forge, repo, verified)
        with self._lock:
            if now - self._last_noted.get(key, float("-inf")) < self.every_s:
                return False
            self._last_noted[key] = now
        return True

    def all(self, repos: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Heard]:
        """Return what each of ``repos`` (forge, name) last heard; repositories never delivered to are absent.

        A repository's last accepted delivery is read from its newest build a forge's delivery
        recorded: one index entry each (``ix_builds_delivered``). (Grouping every build of every repository instead took
        311 ms with 154,000 builds, while the web process served nothing else.)
        """
        asked = set(repos)
        with self.db.begin() as conn:
            rows = [row for row in conn.execute(sa.select(last_deliveries)) if (row.forge, row.repo) in asked]
            accepted = [row for forge, repo in sorted(asked)
                        for row in conn.execute(_NEWEST_DELIVERED, {"forge": forge, "repo": repo}).all()]
        heard: dict[tuple[str, str], Heard] = {}
        for row in rows:
            delivery = LastDelivery(forge=row.forge, repo=row.repo, at=row.at, delivery_id=row.delivery_id,
                                    event=row.event, outcome=row.outcome, detail=row.detail, build_id=row.build_id,
                                    verified=row.verified)
            before = heard.get((row.forge, row.repo), Heard())
            heard[row.forge, row.repo] = replace(before, **{"last" if row.verified else "refused": delivery})
        for row in accepted:
            before = heard.get((row.forge, row.repo), Heard())
            if before.last is None or before.last.at < row.created_at:
                heard[row.forge, row.repo] = replace(before, last=_accepted(row))
        return heard


#: A repository's newest build recorded by a forge's delivery (a push key: not a manual build).
_NEWEST_DELIVERED = (sa.select(builds.c.id, builds.c.forge, builds.c.repo, builds.c.ref, builds.c.delivery_key,
                               builds.c.created_at)
                     .where(builds.c.forge == sa.bindparam("forge"), builds.c.repo == sa.bindparam("repo"),
                            builds.c.push_key.is_not(None))
                     .order_by(builds.c.id.desc()).limit(1))


@dataclass(frozen=True)
class Arrival:
    """One delivery of ``forge`` that arrived ``at``, noted as its repository's last in ``last`` (``None``: nowhere)."""

    last: LastDeliveries | None
    forge: str
    at: float

    @property
    def noting(self) -> bool:
        """Say whether notes are kept (so a refusal's body is searched only then)."""
        return self.last is not None

    def note(self, repo: str, outcome: str, detail: str, *, event: str | None = None, delivery_id: str | None = None,
             build_id: int | None = None, verified: bool = True) -> None:
        """Note what became of the delivery for the configured repository ``repo`` (``verified``: signed by its secret)."""
        if self.last is not None:
            self.last.note(LastDelivery(forge=self.forge, repo=repo, at=self.at, delivery_id=delivery_id, event=event,
                                        outcome=outcome, detail=detail, build_id=build_id, verified=verified))


def _accepted(build: Any) -> LastDelivery:
    """The delivery that recorded ``build`` (a ``builds`` row), as a repository's last delivery."""
    prefix = f"{build.forge}:{build.repo}:"
    delivery_id = build.delivery_key[len(prefix):] if (build.delivery_key or "").startswith(prefix) else None
    return LastDelivery(forge=build.forge, repo=build.repo, at=build.created_at, delivery_id=delivery_id,
                        event="tag_push" if build.ref.startswith("refs/tags/") else "push", outcome=ACCEPTED,
                        detail=builds_detail([build.id], created=True), build_id=build.id)


def _row(delivery: LastDelivery) -> dict[str, Any]:
    return {"forge": delivery.forge, "repo": delivery.repo, "verified": delivery.verified, "at": delivery.at,
            "delivery_id": delivery.delivery_id,
            "event": delivery.event, "outcome": delivery.outcome, "detail": delivery.detail,
            "build_id": delivery.build_id}


def mentioned_repo(names: Sequence[str], body: bytes, content_type: str | None, *,
                   scan_bytes: int = defaults.REFUSED_SCAN_BYTES) -> str | None:
    """Return the configured repository name (of ``names``) that an unverified body names first as a JSON string, if any.

    The body is searched, not parsed: only its first ``scan_bytes`` for ``"<name>"``; of a form
    body, the first ``scan_bytes // 16`` percent-decoded (decoding costs some forty times a search,
    and a stranger chooses the body). Forges put the repository before the commits in their payloads.
    """
    if media_type(content_type) == FORM_TYPE:
        head = unquote_to_bytes(body[:scan_bytes // 16].replace(b"+", b" "))
    else:
        head = body[:scan_bytes]
    found = [(position, name) for name in names
             if (position := head.find(json.dumps(name, ensure_ascii=False).encode())) >= 0]
    return min(found)[1] if found else None


def builds_detail(build_ids: Iterable[int], *, created: bool) -> str:
    """Say what a delivery that recorded builds did: ``build 12 queued``, ``duplicate of build 12``."""
    ids = list(build_ids)
    named = f"build {ids[0]}" if len(ids) == 1 else "builds " + ", ".join(str(i) for i in ids)
    return f"{named} queued" if created else f"duplicate of {named}"
