"""Housekeeping jobs the box runs on a schedule (APScheduler), in the supervisor process."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from .config import Config
from .logs import event
from .store import conversations, open_db, transaction

log = logging.getLogger("schoolbox.jobs")


def prune_conversations(config: Config) -> int:
    """Delete tutor conversations older than the retention period."""
    db = open_db(config.db_path)
    try:
        with transaction(db):
            deleted = conversations.prune(db, config.tutor_retention_days)
    finally:
        db.conn.close()
    event(log, "tutor_conversations_pruned", deleted=deleted)
    return deleted


def start(config: Config) -> BackgroundScheduler:
    """Start every job: once soon after start-up, then on its interval."""
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        prune_conversations,
        "interval",
        hours=6,
        args=[config],
        id="prune_conversations",
        next_run_time=datetime.now(UTC) + timedelta(seconds=30),
        coalesce=True,
        max_instances=1,
    )
    scheduler.start()
    return scheduler
