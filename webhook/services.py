"""The one place a process builds its long-lived collaborators from the configuration."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .build.engine import Engine
from .build.mirror import Mirrors
from .build.pipeline import Pipeline
from .config import Config
from .last_delivery import LastDeliveries
from .metrics import Metrics
from .notify.deliveries import DeliveryStore
from .notify.notifier import Notifier
from .recent_pushes import RecentPushes
from .redact import Redactor
from .store import BuildStore, create_db_engine
from .write_groups import WriteGroups, cooperative_pause


@dataclass
class Services:
    """Everything the web app, the worker and the CLI share, made once per process."""

    config: Config
    store: BuildStore = field(init=False)
    deliveries: DeliveryStore = field(init=False)
    #: Each configured repository's last delivery from its forge (the console's repositories page).
    last_deliveries: LastDeliveries = field(init=False)
    #: The pushes this process accepted lately, so their replays are answered from memory.
    recent_pushes: RecentPushes = field(init=False, default_factory=RecentPushes)
    #: What this process counts for /metrics.
    metrics: Metrics = field(init=False)
    mirrors: Mirrors = field(init=False)
    redact: Redactor = field(init=False)

    def __post_init__(self) -> None:
        server = self.config.server
        server.data_dir.mkdir(parents=True, exist_ok=True)
        db = create_db_engine(server.state_url)
        self.metrics = Metrics(db)
        self.store = BuildStore(db, ended=self.metrics.build_ended,
                                writes=WriteGroups(db, pause=cooperative_pause(db)))
        self.deliveries = DeliveryStore(db)
        self.last_deliveries = LastDeliveries(db)
        self.store.create_schema()
        self.mirrors = Mirrors(server.mirror_dir, allow_file_urls=server.allow_file_urls,
                               budget_bytes=server.mirror_budget_bytes)
        self.redact = Redactor(secret.reveal() for secret in self.config.secrets())

    @functools.cached_property
    def _engine(self) -> Engine:
        return Engine.connect(self.config.engine)

    def engine(self) -> Engine:
        """Return the Docker engine client, connecting on first use."""
        return self._engine

    @functools.cached_property
    def notifier(self) -> Notifier:
        """The sender of commit statuses and redeploy hooks."""
        return Notifier(config=self.config, builds=self.store, deliveries=self.deliveries, redact=self.redact,
                        metrics=self.metrics)

    def pipeline(self) -> Pipeline:
        """Return a build pipeline wired to this process's collaborators."""
        return Pipeline(config=self.config, store=self.store, mirrors=self.mirrors,
                        engine=self.engine, redact=self.redact, notifier=self.notifier, metrics=self.metrics)
