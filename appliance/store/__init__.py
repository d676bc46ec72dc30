"""The one SQLite file: opening it, transactions, and the query modules beside this one."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlite_utils

from appliance.paths import shared_with_group

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# Writers in one process queue on a lock instead of on SQLite's busy handler, which polls
# with sleeps of up to 100 ms: a lock handed over at once keeps a class's answers flowing.
log = logging.getLogger("schoolbox.store")
_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(db: sqlite_utils.Database) -> threading.Lock:
    """The lock shared by every connection of this process to the same database file."""
    lock = getattr(db, "_schoolbox_writer_lock", None)
    if lock is None:
        path = db.conn.execute("PRAGMA database_list").fetchone()[2]
        with _writer_locks_guard:
            lock = _writer_locks.setdefault(path, threading.Lock())
        setattr(db, "_schoolbox_writer_lock", lock)  # noqa: B010 - sqlite-utils has no slot for it
    return lock


class DatabaseFileError(ValueError):
    """The database file is not one Schoolbox can open; the message names it and what to do."""


def _share_with_group(path: Path) -> None:
    """On the image every service shares the database through its group (docs/image.md):
    SQLite makes a new file 0644 less the umask, and its -wal and -shm files copy that
    mode, so the creator makes the file writable by the group (never by others)."""
    try:
        if shared_with_group(path.parent) and path.stat().st_mode & 0o060 != 0o060:
            path.chmod(0o660)
    except OSError:  # not the creator: the creator made it so already
        pass


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open the box's database with the settings every connection needs."""
    path = Path(path)
    # SQLite would take an empty file for a new database and the box would start with an
    # empty school: a truncated or badly restored file must stop it, not be replaced.
    if path.is_file() and path.stat().st_size == 0:
        raise DatabaseFileError(
            f"{path}: the database file is empty (0 bytes), so the school's data is not in it. "
            "Restore it from a backup; to start a new school on purpose, delete the file."
        )
    # isolation_level=None: we issue BEGIN ourselves, so a write transaction is
    # always BEGIN IMMEDIATE and never fails half-way on a lock upgrade.
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    _share_with_group(path)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # the first read of the file's header
    except sqlite3.DatabaseError as error:
        conn.close()
        if isinstance(error, sqlite3.OperationalError):  # locked, unreadable: not the file
            raise
        raise DatabaseFileError(
            f"{path}: not a Schoolbox database ({error}). Restore it from a backup."
        ) from error
    # FULL, not NORMAL: in WAL mode only FULL makes a commit survive power loss, and
    # a learner's answer is acknowledged only after its commit.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return sqlite_utils.Database(conn)


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run a block as one write transaction: all of it is committed, or none."""
    if db.conn.in_transaction:  # nested: let the outer transaction decide
        with db.atomic():
            yield db
        return
    with _writer_lock(db):
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")


class _Job:
    """One thread's part of a group commit."""

    def __init__(self, work: Callable[[sqlite_utils.Database], T]):
        self.work, self.done = work, False
        self.result: object = None
        self.error: BaseException | None = None


_queues: dict[str, list[_Job]] = {}
_queues_guard = threading.Lock()


def grouped(db: sqlite_utils.Database, work: Callable[[sqlite_utils.Database], T]) -> T:
    """Run `work(db)` in a write transaction it may share with other threads of this
    process (group commit), and return its result once that transaction is committed.

    Every write pays one fsync (synchronous=FULL); a class answering at once would queue
    for them one by one. Instead, the thread that gets the writer lock runs every piece
    of work waiting at that moment, each in its own savepoint (one that fails is undone
    alone and raises in its own thread), and commits them together. `work` must use the
    database it is given: it may run on another thread's connection.
    """
    if db.conn.in_transaction:  # nested: part of the caller's transaction
        return work(db)
    job = _Job(work)
    queue = _queue(db)
    with _queues_guard:
        queue.append(job)
    with _writer_lock(db):
        if not job.done:  # nobody took it while we waited: lead, with all that waits now
            with _queues_guard:
                jobs = queue[:]
                queue.clear()
            _commit_together(db, jobs)
    if job.error is not None:
        raise job.error
    return cast(T, job.result)  # no error: it holds what this call's `work` returned


SOON_S = 0.5  # how long a soon() write may wait for another write to carry it


def soon(db: sqlite_utils.Database, work: Callable[[sqlite_utils.Database], object]) -> None:
    """Queue `work(db)` to be committed with the next group commit of this process, or
    within SOON_S by a flusher thread, without waiting for it: for records worth keeping
    but not worth a learner's wait (a lesson opened), which a crash in that half second
    may lose. Never for an answer or anything acknowledged as saved."""
    job = _Job(work)
    queue = _queue(db)
    with _queues_guard:
        queue.append(job)
    path = db.conn.execute("PRAGMA database_list").fetchone()[2]
    _flusher(path).wake.set()


class _Flusher(threading.Thread):
    """Commits what soon() queued when no other write has carried it (one per file)."""

    def __init__(self, path: str):
        super().__init__(name="schoolbox-soon", daemon=True)
        self.path, self.wake = path, threading.Event()

    def run(self) -> None:
        db = open_db(self.path)
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(SOON_S)  # give a request's own write the chance to carry it first
            with _writer_lock(db):
                with _queues_guard:
                    jobs = _queues.get(self.path, [])[:]
                    _queues.get(self.path, []).clear()
                if jobs:
                    _commit_together(db, jobs)
            for job in jobs:
                if job.error is not None:  # nobody waits for it: say so in the log
                    log.warning("a queued write failed: %s", type(job.error).__name__)


_flushers: dict[str, _Flusher] = {}


def _flusher(path: str) -> _Flusher:
    with _queues_guard:
        found = _flushers.get(path)
        if found is None or not found.is_alive():
            found = _flushers[path] = _Flusher(path)
            found.start()
        return found


def _queue(db: sqlite_utils.Database) -> list[_Job]:
    path = db.conn.execute("PRAGMA database_list").fetchone()[2]
    with _queues_guard:
        return _queues.setdefault(path, [])


def _commit_together(db: sqlite_utils.Database, jobs: list[_Job]) -> None:
    try:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                db.conn.execute("SAVEPOINT job")
                try:
                    job.result = job.work(db)
                except Exception as error:  # this job's own failure: undo only its writes
                    db.conn.execute("ROLLBACK TO job")
                    job.error = error
                db.conn.execute("RELEASE job")
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
    except BaseException as error:  # nothing was committed: every job fails with it
        for job in jobs:
            job.result, job.error = None, error
    finally:
        for job in jobs:
            job.done = True


def quick_check(db: sqlite_utils.Database) -> str | None:
    """SQLite's quick integrity check: None if the file is sound, else its first finding."""
    try:
        found = [row[0] for row in db.conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as error:  # damaged past the point of checking
        return str(error)
    return None if found == ["ok"] else "; ".join(found)


def now() -> str:
    """The current time as the ISO-8601 UTC text every table stores."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def days_ago(days: float) -> str:
    """The time `days` ago, in the same text form as now(), for "older than" queries."""
    return (
        (datetime.now(UTC) - timedelta(days=days))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def one(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
    """The first row of a query, or None."""
    return db.conn.execute(sql, params).fetchone()


def value(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> Any:
    """The first column of a query that always gives a row (an aggregate such as count(*));
    LookupError if it gave none."""
    row = db.conn.execute(sql, params).fetchone()
    if row is None:
        raise LookupError(f"the query gave no row: {sql}")
    return row[0]


def the_row(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> sqlite3.Row:
    """The first row of a query that always gives one (an aggregate, a row just written);
    LookupError if it gave none."""
    row = db.conn.execute(sql, params).fetchone()
    if row is None:
        raise LookupError(f"the query gave no row: {sql}")
    return row


def inserted(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> int:
    """Run an INSERT and return the new row's id."""
    rowid = db.conn.execute(sql, params).lastrowid
    if rowid is None:
        raise LookupError(f"the statement inserted no row: {sql}")
    return rowid


def rows(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
    """All rows of a query."""
    return db.conn.execute(sql, params).fetchall()
