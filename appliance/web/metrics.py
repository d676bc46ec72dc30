"""Prometheus metrics: requests, latency and errors per route, database and outbox sizes."""

from __future__ import annotations

import os
import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# Buckets around the p99 target of 250 ms for lesson pages and answers.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide.

    With several worker processes (appliance/server.py sets PROMETHEUS_MULTIPROC_DIR),
    each counts into shared files and `exposition` sums them, so /metrics shows the box.
    """

    def __init__(self, app: Flask) -> None:
        self.registry = CollectorRegistry()
        config = app.config["SCHOOLBOX"]
        self.requests = Counter(
            "schoolbox_requests",
            "HTTP requests by route, method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "schoolbox_request_seconds",
            "Time to answer an HTTP request",
            ["endpoint", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "schoolbox_request_errors",
            "Requests that failed with a server error",
            ["endpoint"],
            registry=self.registry,
        )
        self.tutor_answers = Counter(
            "schoolbox_tutor_answers",
            "Tutor answers by outcome (answered, from_lessons, refused, busy, ...)",
            ["outcome"],
            registry=self.registry,
        )
        self.tutor_first_word = Histogram(
            "schoolbox_tutor_first_word_seconds",
            "From a question to the first word of the model's answer, queue included",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
            registry=self.registry,
        )
        self.started = time.time()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.exposition = CollectorRegistry()
            MultiProcessCollector(self.exposition)
        else:
            self.exposition = self.registry
        self.exposition.register(_BoxCollector(config.db_path, self.started))

    def install(self, app: Flask) -> None:
        app.before_request(self._start)
        app.after_request(self._finish)

    def _start(self) -> None:
        g.request_started = time.perf_counter()

    def _finish(self, response):
        started = g.get("request_started")  # also read by the request log
        endpoint = request.endpoint or "unmatched"
        self.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        if started is not None:
            self.latency.labels(endpoint, request.method).observe(time.perf_counter() - started)
        if response.status_code >= 500:
            self.errors.labels(endpoint).inc()
        return response

    def summary(self) -> dict:
        """Totals for the admin status page: requests, server errors, mean latency."""
        total = errors = count = seconds = 0.0
        for family in self.exposition.collect():
            for sample in family.samples:
                if sample.name == "schoolbox_requests_total":
                    total += sample.value
                elif sample.name == "schoolbox_request_errors_total":
                    errors += sample.value
                elif sample.name == "schoolbox_request_seconds_count":
                    count += sample.value
                elif sample.name == "schoolbox_request_seconds_sum":
                    seconds += sample.value
        return {
            "requests": int(total),
            "server_errors": int(errors),
            "mean_ms": round(1000 * seconds / count, 1) if count else 0.0,
            "uptime_s": int(time.time() - self.started),
        }


class _BoxCollector:
    """Figures read when scraped: the database's size and how long the app has run."""

    def __init__(self, db_path, started: float) -> None:
        self.db_path, self.started = db_path, started

    def collect(self):
        yield GaugeMetricFamily(
            "schoolbox_database_bytes",
            "Size of the SQLite database and its WAL",
            value=database_bytes(self.db_path),
        )
        yield GaugeMetricFamily(
            "schoolbox_uptime_seconds",
            "Seconds since the app started",
            value=time.time() - self.started,
        )


def database_bytes(path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += path.with_name(path.name + suffix).stat().st_size
        except FileNotFoundError:
            pass
    return total
