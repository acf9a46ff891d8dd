"""Prometheus metrics: process-local timings, plus figures read from Redis at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class Snapshot:
    """Figures shared by all processes, refreshed from Redis before each scrape."""

    notices: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status) → n
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, outcome)
    stream_lag: dict[str, int] = field(default_factory=dict)  # stream → entries not yet read
    stream_pending: dict[str, int] = field(default_factory=dict)  # read, not yet acknowledged


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        notices = GaugeMetricFamily(
            "notifier_notices", "Notices by kind and status", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(self.snapshot.notices.items()):
            notices.add_metric([kind, status], n)
        yield notices
        deliveries = CounterMetricFamily(
            "notifier_deliveries",
            "Recipients reached or not, by channel and outcome (all workers)",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), n in sorted(self.snapshot.deliveries.items()):
            deliveries.add_metric([channel, outcome], n)
        yield deliveries
        lag = GaugeMetricFamily(
            "notifier_stream_lag", "Stream entries not yet read by the group", labels=["stream"]
        )
        for stream, n in sorted(self.snapshot.stream_lag.items()):
            lag.add_metric([stream], n)
        yield lag
        pending = GaugeMetricFamily(
            "notifier_stream_pending",
            "Stream entries read but not yet acknowledged",
            labels=["stream"],
        )
        for stream, n in sorted(self.snapshot.stream_pending.items()):
            pending.add_metric([stream], n)
        yield pending


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = Snapshot()
        self.registry.register(_SnapshotCollector(self.snapshot))
        self.send_seconds = Histogram(
            "notifier_send_seconds",
            "Time to hand one batch to its channel (this process)",
            ["channel"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.dispatch_seconds = Histogram(
            "notifier_dispatch_seconds",
            "Time from a notice's intake entry to its batches being queued (this process)",
            registry=self.registry,
        )
        self.email_unconfirmed = Counter(
            "notifier_email_unconfirmed",
            "Email addresses reached whose record no replica confirmed in time, or that"
            " could not be written: each could be mailed twice by a failover (this process)",
            registry=self.registry,
        )
        self.line_requests = Counter(
            "notifier_line_requests",
            "LINE API requests by endpoint and HTTP status (0: no answer) (this process)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.line_refused = Counter(
            "notifier_line_refused",
            "LINE's 429s by endpoint and reason: rate (over the endpoint's limit) or monthly"
            " (this process)",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.line_rate_limit = Gauge(
            "notifier_line_rate_limit",
            "Requests a second the service allows itself per LINE endpoint (all processes)",
            ["endpoint"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "notifier_http_requests",
            "HTTP requests by route and status (this process)",
            ["route", "status"],
            registry=self.registry,
        )
