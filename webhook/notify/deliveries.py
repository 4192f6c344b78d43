"""Delivery records: every commit status and redeploy hook pushbuild owes someone, and each attempt.

A delivery is ``pending`` until it is ``delivered``, ``failed`` (a permanent refusal, or out of
attempts) or ``superseded`` (a newer status or a newer commit's hook made it moot). Workers
claim due deliveries atomically, so two workers never send the same attempt.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..store import builds, metadata
from ..timestamps import iso_time

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("build_id", sa.Integer, sa.ForeignKey("builds.id"), nullable=False, index=True),
    sa.Column("repo", sa.String(512), nullable=False),
    sa.Column("ref", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # status | hook
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
)

delivery_attempts = sa.Table(
    "delivery_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
)


class DeliveryKind(str, enum.Enum):
    """What a delivery carries: a commit status to the forge, or a redeploy hook's message."""

    STATUS = "status"
    HOOK = "hook"


class DeliveryState(str, enum.Enum):
    """Where a delivery is in its life."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Attempt:
    """One try at a delivery."""

    at: float
    duration_s: float
    status_code: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the attempt as the API shows it."""
        return {"at": iso_time(self.at), "duration_s": round(self.duration_s, 3), "status_code": self.status_code,
                "error": self.error}


@dataclass(frozen=True)
class Delivery:
    """One status or hook owed, as stored."""

    id: int
    build_id: int
    repo: str
    ref: str
    kind: str
    target: str
    state: DeliveryState
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        """Build the value from a ``deliveries`` row."""
        m = row._mapping
        return cls(id=m["id"], build_id=m["build_id"], repo=m["repo"], ref=m["ref"], kind=m["kind"],
                   target=m["target"], state=DeliveryState(m["state"]), payload=json.loads(m["payload"]),
                   attempts=m["attempts"], next_attempt_at=m["next_attempt_at"], last_error=m["last_error"],
                   created_at=m["created_at"], finished_at=m["finished_at"])

    def to_json(self, attempts: list[Attempt]) -> dict[str, Any]:
        """Return the delivery and its attempts as the API shows them (never a secret: payloads hold none)."""
        return {"id": self.id, "build": self.build_id, "kind": self.kind, "target": self.target,
                "state": self.state.value, "attempts": [a.to_json() for a in attempts],
                "next_attempt_at": iso_time(self.next_attempt_at) if self.state is DeliveryState.PENDING else None,
                "last_error": self.last_error, "created_at": iso_time(self.created_at),
                "finished_at": iso_time(self.finished_at)}


class DeliveryStore:
    """Reads and writes deliveries and their attempts."""

    def __init__(self, db: sa.Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def add(self, *, build_id: int, repo: str, ref: str, kind: str, target: str, payload: dict[str, Any],
            supersede_pending_of_build: bool = False) -> Delivery:
        """Record a delivery due now; optionally mark this build's pending ones of the same kind superseded."""
        now = self.clock()
        with self.db.begin() as conn:
            if supersede_pending_of_build:
                conn.execute(deliveries.update().where(
                    deliveries.c.build_id == build_id, deliveries.c.kind == kind, deliveries.c.target == target,
                    deliveries.c.state == DeliveryState.PENDING.value,
                ).values(state=DeliveryState.SUPERSEDED.value, finished_at=now))
            new_id = conn.execute(deliveries.insert().values(
                build_id=build_id, repo=repo, ref=ref, kind=kind, target=target, state=DeliveryState.PENDING.value,
                payload=json.dumps(payload), attempts=0, next_attempt_at=now, created_at=now,
            )).inserted_primary_key[0]
        return self.get(new_id)

    def get(self, delivery_id: int) -> Delivery | None:
        """Return one delivery, or ``None``."""
        with self.db.begin() as conn:
            row = conn.execute(deliveries.select().where(deliveries.c.id == delivery_id)).first()
        return Delivery.from_row(row) if row else None

    def of_build(self, build_id: int) -> list[Delivery]:
        """Return a build's deliveries, oldest first."""
        query = deliveries.select().where(deliveries.c.build_id == build_id).order_by(deliveries.c.id)
        with self.db.begin() as conn:
            return [Delivery.from_row(row) for row in conn.execute(query)]

    def attempts(self, delivery_id: int) -> list[Attempt]:
        """Return a delivery's attempts, oldest first."""
        query = (sa.select(delivery_attempts).where(delivery_attempts.c.delivery_id == delivery_id)
                 .order_by(delivery_attempts.c.id))
        with self.db.begin() as conn:
            return [Attempt(r.at, r.duration_s, r.status_code, r.error) for r in conn.execute(query)]

    def claim_due(self, *, hold_s: float, build_id: int | None = None, limit: int = 20) -> list[Delivery]:
        """Take pending deliveries that are due, pushing their next attempt ``hold_s`` ahead while they are sent."""
        now = self.clock()
        query = (deliveries.select()
                 .where(deliveries.c.state == DeliveryState.PENDING.value, deliveries.c.next_attempt_at <= now)
                 .order_by(deliveries.c.id).limit(limit))
        if build_id is not None:
            query = query.where(deliveries.c.build_id == build_id)
        claimed = []
        with self.db.begin() as conn:
            for row in conn.execute(query).all():
                taken = conn.execute(deliveries.update().where(
                    deliveries.c.id == row.id, deliveries.c.next_attempt_at == row.next_attempt_at,
                    deliveries.c.state == DeliveryState.PENDING.value,
                ).values(next_attempt_at=now + hold_s)).rowcount
                if taken:
                    claimed.append(Delivery.from_row(row))
        return claimed

    def record_attempt(self, delivery: Delivery, *, state: DeliveryState, at: float, duration_s: float,
                       status_code: int | None, error: str | None, retry_at: float | None = None) -> None:
        """Record one attempt and where the delivery stands after it."""
        finished = None if state is DeliveryState.PENDING else self.clock()
        with self.db.begin() as conn:
            conn.execute(delivery_attempts.insert().values(
                delivery_id=delivery.id, at=at, duration_s=duration_s, status_code=status_code, error=error))
            conn.execute(deliveries.update().where(deliveries.c.id == delivery.id).values(
                state=state.value, attempts=deliveries.c.attempts + 1, last_error=error, finished_at=finished,
                next_attempt_at=retry_at if retry_at is not None else deliveries.c.next_attempt_at,
            ))

    def supersede(self, delivery: Delivery) -> None:
        """Mark a delivery moot without sending it."""
        with self.db.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery.id).values(
                state=DeliveryState.SUPERSEDED.value, finished_at=self.clock()))

    def reopen(self, delivery_id: int) -> Delivery | None:
        """Make a delivery due again now, whatever its state (``pushbuild redeliver``), unless its build is being pruned."""
        pruning = sa.exists().where(builds.c.id == deliveries.c.build_id, builds.c.pruning_at.is_not(None))
        with self.db.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id, ~pruning).values(
                state=DeliveryState.PENDING.value, next_attempt_at=self.clock(), finished_at=None))
        return self.get(delivery_id)
