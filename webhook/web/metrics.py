"""``GET /metrics``: the Prometheus text format, for the ``metrics`` scope and above (webhook/metrics.py counts)."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from ..metrics import scrape
from ..services import Services

bp = Blueprint("metrics", __name__)
#: The Prometheus text exposition format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Scraped:
    """A collector handing prometheus_client the families already read for this scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        """Return the families (prometheus_client's collector interface)."""
        return self.families


@bp.get("/metrics")
def metrics() -> Response:
    """Answer every series, this process's counts written first (access.py checks the scope)."""
    services: Services = current_app.extensions["pushbuild"]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scraped(scrape(services.metrics, services.store)))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE)
