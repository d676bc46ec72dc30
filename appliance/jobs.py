"""Housekeeping jobs the box runs on a schedule (APScheduler), in the supervisor process."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import sqlite_utils
from apscheduler.schedulers.background import BackgroundScheduler

from appliance import notify, paths
from appliance.config import Config
from appliance.knowledge import tracing as knowledge
from appliance.logs import event
from appliance.store import conversations, open_db, recommendations, transaction
from sync import enrolment
from sync.box import outbox, transport
from sync.box import updates as box_updates

log = logging.getLogger("schoolbox.jobs")
NICE = 5


def prune_conversations(config: Config) -> int:
    """Delete tutor conversations older than the retention period."""
    return _prune(config, "tutor_conversations_pruned", conversations.prune,
                  config.tutor_retention_days)  # fmt: skip


def prune_recommendations(config: Config) -> int:
    """Delete the reasons practice items were chosen, after their retention period."""
    return _prune(config, "recommendations_pruned", recommendations.prune,
                  config.recommendation_retention_days)  # fmt: skip


def _prune(config: Config, name: str, prune, days: int) -> int:
    db = open_db(config.db_path)
    try:
        with transaction(db):
            deleted = prune(db, days)
    finally:
        db.conn.close()
    event(log, name, deleted=deleted)
    return deleted


class KnowledgeFollower:
    """The knowledge-tracing follower as a job: one connection kept open between runs."""

    def __init__(self, config: Config):
        self.config = config
        self.db: sqlite_utils.Database | None = None

    def __call__(self) -> int:

        # Pages first: on Linux a thread has its own nice value, so only this job yields.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        if self.db is None:
            self.db = open_db(self.config.db_path)
        # Stop before the next run is due, so the scheduler never has to skip one.
        budget = 0.8 * max(1, self.config.knowledge_trace_seconds)
        try:
            return knowledge.follow(self.db, self.config.home, until=time.monotonic() + budget)
        except Exception:
            # A locked or damaged database: log, reopen next time, never kill the scheduler.
            log.exception("knowledge-tracing follower failed; it will try again")
            self.db.conn.close()
            self.db = None
            return 0


def sync_with_district(config: Config) -> int:
    """Seal what waits into bundles and, when a hub is set and answers, send them."""

    db = open_db(config.db_path)
    try:
        if enrolment.district_keys(config.home) is None:
            return 0  # not enrolled yet: nothing to seal to
        try:
            outbox.seal_pending(db, config.home, outbox.Settings.of(config))
        except Exception:  # a full outbox, a bundle that will not fit: what is sealed still goes
            log.exception("sealing sync bundles failed; sending what is already sealed")
        if not config.sync_url:
            return 0
        sent = transport.send_pending(db, config.home, config.sync_url)
        if transport.reachable(config.sync_url):
            incoming = paths.updates_incoming(config.home)
            transport.fetch_updates(config.sync_url, incoming)
            box_updates.apply_all(db, config.home, incoming, config.sync_require_signed_updates)
    except Exception:  # a refused bundle, a damaged key: say so, never kill the scheduler
        log.exception("sync with the district failed; it will try again")
        return 0
    finally:
        db.conn.close()
    event(log, "sync_sent", bundles=sent)
    return sent


def start(config: Config, sync: bool = True) -> BackgroundScheduler:
    """Start every job (sync with the district too, unless `sync` is False: the image runs
    it as a unit of its own): once soon after start-up, then on its interval."""
    scheduler = BackgroundScheduler(timezone="UTC")
    # (job, its id, first run after this many seconds, the interval)
    plan = [
        (KnowledgeFollower(config), "trace_answers", 2,
         {"seconds": max(1, config.knowledge_trace_seconds)}),
        (partial(prune_conversations, config), "prune_conversations", 30, {"hours": 6}),
        (partial(prune_recommendations, config), "prune_recommendations", 40, {"hours": 6}),
        (partial(sync_with_district, config), "sync_with_district", 60,
         {"minutes": max(1, config.sync_interval_minutes)}),
    ]  # fmt: skip
    if not sync:
        plan = [entry for entry in plan if entry[1] != "sync_with_district"]
    for job, name, first_s, interval in plan:
        scheduler.add_job(
            job, "interval", id=name, coalesce=True, max_instances=1,
            next_run_time=datetime.now(UTC) + timedelta(seconds=first_s), **interval,
        )  # fmt: skip
    scheduler.start()
    return scheduler


def run(config: Config) -> None:
    """The jobs as a service of their own (`schoolbox jobs`, the image's schoolbox-jobs
    unit), sync left to its own unit: until SIGTERM, feeding systemd's watchdog while the
    scheduler runs."""
    scheduler = start(config, sync=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    notify.ready("housekeeping jobs scheduled")
    notify.keep_alive(lambda: scheduler.running, stop)
    try:
        stop.wait()
    finally:
        notify.stopping()
        scheduler.shutdown(wait=True)
