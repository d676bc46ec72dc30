"""kill -9 of a box while it seals and while it uploads, then a restart: the hub ends up
with exactly the box's answers, and the box's outbox with exactly its recorded bundles."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from appliance.store import site, transaction
from appliance.store.ids import uuid7
from sync.box import outbox
from sync.hub import home as hub_store
from tests.conftest import SCHOOLBOX
from tests.sync.conftest import make_box

pytestmark = pytest.mark.slow  # real box and hub processes, killed with -9


def _more_answers(db, count: int) -> None:
    items = [(r[0], r[1]) for r in db.conn.execute("SELECT id, lesson_id FROM items")]
    learners = [r[0] for r in db.conn.execute("SELECT id FROM users WHERE role = 'learner'")]
    rng = random.Random(5)
    rows = [(uuid7(), rng.choice(learners), *rng.choice(items), "1", rng.randint(0, 1), 0, 900,
             "2026-11-20T10:00:00.000Z") for _ in range(count)]  # fmt: skip
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
            " hints_used, duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def test_kill_9_while_sealing_and_uploading_loses_and_doubles_nothing(
    config, db, hub_home, hub_server
):
    make_box(config.home, hub_home, db)
    _more_answers(db, 30_000)
    port = hub_server
    env = {**os.environ, "SCHOOLBOX_SYNC_MAX_BUNDLE_KB": "16"}  # many small bundles
    seal_only = [SCHOOLBOX, "--home", str(config.home), "sync", "now"]
    send = [*seal_only, "--url", f"http://127.0.0.1:{port}"]
    killed_with, stages = [], []

    def kill_when(command, moment) -> None:
        """Start a box run and kill -9 it as soon as `moment()` holds (or it ends)."""
        box = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while box.poll() is None and not moment():
            time.sleep(0.005)
        box.send_signal(signal.SIGKILL)
        box.wait()
        killed_with.append(box.returncode)
        _outbox_is_consistent(db, config.home)
        stages.append(_stage(db))

    def count(sql: str) -> int:
        return db.conn.execute(sql).fetchone()[0]

    for _ in range(3):  # kill -9 while sealing: once some bundles are recorded
        before = count("SELECT count(*) FROM sync_outbox")
        kill_when(seal_only, lambda b=before: count("SELECT count(*) FROM sync_outbox") > b)
    for _ in range(3):  # kill -9 while uploading: once some bundles are acknowledged
        before = count("SELECT count(*) FROM sync_outbox WHERE acked_at IS NOT NULL")
        kill_when(send, lambda b=before: count(
            "SELECT count(*) FROM sync_outbox WHERE acked_at IS NOT NULL") > b)  # fmt: skip
    finished = subprocess.run(send, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert -signal.SIGKILL in killed_with  # runs really were cut off...
    assert "sealing" in stages and "uploading" in stages, stages  # ...in both phases
    box_id = site.get(db)["box_id"]
    hub_db = hub_store.open_hub(hub_home)
    at_hub = hub_db.execute("SELECT count(*) FROM attempts WHERE box_id = ?", (box_id,)).fetchone()[
        0
    ]
    seqs = [r[0] for r in hub_db.execute("SELECT seq FROM received ORDER BY seq")]
    hub_db.close()
    assert at_hub == db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert seqs == list(range(1, len(seqs) + 1)) and outbox.pending(db) == []
    counts = [
        json.loads(r[0]).get("attempts", 0)
        for r in db.conn.execute("SELECT counts FROM sync_outbox")
    ]
    assert sum(counts) == at_hub  # every answer in exactly one bundle


def _stage(db) -> str:
    """Where the last killed run was: still sealing answers, or sending bundles."""
    left = db.conn.execute(
        "SELECT count(*) FROM attempts WHERE rowid > coalesce((SELECT CAST(mark AS INTEGER)"
        " FROM sync_marks WHERE kind = 'attempts'), 0)"
    ).fetchone()[0]
    acked = db.conn.execute(
        "SELECT count(*) FROM sync_outbox WHERE acked_at IS NOT NULL"
    ).fetchone()[0]
    total = db.conn.execute("SELECT count(*) FROM sync_outbox").fetchone()[0]
    if left:
        return "sealing"
    return "uploading" if 0 < acked < total else ("done" if acked else "sealed")


def _outbox_is_consistent(db, home) -> None:
    """After a crash: every waiting bundle's file is whole, and no file is unrecorded
    once the next sealer has swept (a leftover may wait until then)."""
    for row in outbox.pending(db):
        path = outbox.folder(home) / row["file"]
        assert path.exists() and path.stat().st_size == row["bytes"], row
