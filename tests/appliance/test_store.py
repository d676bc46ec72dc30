"""The database: settings, migrations, append-only logs, erasure, ids."""

from __future__ import annotations

import sqlite3
import time

import pytest

from appliance.store import audit, grouped, open_db, school_data, soon, transaction, users
from appliance.store.ids import uuid7
from appliance.store.migrations import CURRENT_VERSION, SchemaTooNew, migrate, version


def test_a_new_database_is_migrated_to_the_current_version_with_safe_settings(tmp_path):
    db = open_db(tmp_path / "box.db")
    assert migrate(db) == CURRENT_VERSION
    assert version(db) == CURRENT_VERSION
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert migrate(db) == 0  # already current: nothing to do


def test_an_older_database_upgrades_in_place_keeping_its_rows(tmp_path, monkeypatch):
    from appliance.store import migrations

    db = open_db(tmp_path / "box.db")
    migrate(db)
    with transaction(db):
        users.create_learner(db, audit.SYSTEM, "Ada", "1234", b"k" * 32)

    def _v2(database):
        database.execute("ALTER TABLE users ADD COLUMN nickname TEXT")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, _v2])
    monkeypatch.setattr(migrations, "CURRENT_VERSION", CURRENT_VERSION + 1)
    assert migrations.migrate(db) == 1
    assert version(db) == CURRENT_VERSION + 1
    assert db.conn.execute("SELECT display_name, nickname FROM users").fetchone()[:] == (
        "Ada",
        None,
    )


def test_a_database_from_a_newer_schoolbox_is_refused_with_a_clear_message(tmp_path):
    db = open_db(tmp_path / "box.db")
    migrate(db)
    db.execute(f"PRAGMA user_version={CURRENT_VERSION + 3}")
    with pytest.raises(SchemaTooNew, match="newer Schoolbox"):
        migrate(db)


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    from appliance.store import migrations

    db = open_db(tmp_path / "box.db")

    def broken(database):
        database.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("power cut")

    monkeypatch.setattr(migrations, "MIGRATIONS", [broken])
    monkeypatch.setattr(migrations, "CURRENT_VERSION", 1)
    with pytest.raises(RuntimeError):
        migrations.migrate(db)
    assert version(db) == 0
    assert "half_done" not in db.table_names()


def test_attempts_and_the_audit_log_refuse_updates(db):
    db.conn.execute("UPDATE users SET active = 1 WHERE id = 1")  # ordinary tables may change
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("UPDATE attempts SET correct = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("UPDATE audit_log SET action = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("DELETE FROM audit_log")


def test_uuid7_ids_are_unique_and_sort_in_creation_order():
    ids = [uuid7() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i[14] == "7" for i in ids)  # version nibble
    assert uuid7(at_ms=0) < ids[0]


def test_erasing_a_learner_removes_personal_data_and_attempts_and_keeps_a_tombstone(db, ids):
    learner_id = ids["learners"]["Class 4A"][0]
    public_id = db.conn.execute(
        "SELECT public_id FROM users WHERE id = ?", (learner_id,)
    ).fetchone()[0]
    assert (
        db.conn.execute(
            "SELECT count(*) FROM attempts WHERE learner_id = ?", (learner_id,)
        ).fetchone()[0]
        > 0
    )
    admin = audit.Actor(ids["admin"], "admin")
    with transaction(db):
        assert users.erase_learner(db, admin, learner_id)
    row = db.conn.execute("SELECT * FROM users WHERE id = ?", (learner_id,)).fetchone()
    assert row["display_name"] == "erased" and row["pin_hash"] is None and row["erased_at"]
    assert (
        db.conn.execute(
            "SELECT count(*) FROM attempts WHERE learner_id = ?", (learner_id,)
        ).fetchone()[0]
        == 0
    )
    assert (
        db.conn.execute(
            "SELECT count(*) FROM enrolments WHERE learner_id = ?", (learner_id,)
        ).fetchone()[0]
        == 0
    )
    assert (
        db.conn.execute(
            "SELECT erased_by FROM tombstones WHERE public_id = ?", (public_id,)
        ).fetchone()[0]
        == ids["admin"]
    )
    entry = audit.search(db, action="learner.erase")[0]
    assert entry["actor_id"] == ids["admin"] and entry["target_id"] == str(learner_id)
    assert users.erase_learner(db, admin, learner_id) is False  # already gone


def test_the_audit_log_never_holds_names_or_pins(db):
    text = " ".join(str(tuple(r)) for r in db.conn.execute("SELECT * FROM audit_log"))
    names = [r[0] for r in db.conn.execute("SELECT display_name FROM users")]
    details = " ".join(str(r[0]) for r in db.conn.execute("SELECT detail FROM audit_log"))
    assert text
    for name in names:
        assert name not in text
    assert "1234" not in details  # the demo learners' PIN


def test_group_commit_stores_every_answer_once_and_shares_commits(db, config, ids, monkeypatch):
    import threading

    import appliance.store as store_module
    from appliance.store import attempts, content, open_db

    sizes = []
    commit = store_module._commit_together

    def counted(database, jobs):
        sizes.append(len(jobs))
        return commit(database, jobs)

    monkeypatch.setattr(store_module, "_commit_together", counted)
    item = content.item(db, "fr01-02")
    learners = ids["learners"]["Class 4A"]
    before = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]

    def answer(n: int) -> None:
        own = open_db(config.db_path)  # one connection per thread, as in the server
        for k in range(10):
            key = f"group-{n}-{k:04d}"
            attempts.record(own, learners[n % len(learners)], item, "1", True, 0, None, key)
            attempts.record(own, learners[n % len(learners)], item, "1", True, 0, None, key)
        own.conn.close()

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    after = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert after - before == 120  # every answer once, resends not again
    assert sum(sizes) == 120 and max(sizes) > 1  # resends stop early; commits are shared


def test_one_failing_write_in_a_group_is_undone_alone(db):
    import sqlite3

    from appliance.store import _commit_together, _Job

    def insert(name):
        return lambda writer: (
            writer.conn.execute(
                "INSERT INTO login_failures (subject, at) VALUES (?, 0)", (name,)
            ).rowcount
        )

    def half_then_fail(writer):
        insert("half")(writer)
        raise sqlite3.IntegrityError("this job's own failure")

    jobs = [_Job(insert("first")), _Job(half_then_fail), _Job(insert("last"))]
    _commit_together(db, jobs)
    subjects = {r[0] for r in db.conn.execute("SELECT subject FROM login_failures")}
    assert {"first", "last"} <= subjects and "half" not in subjects
    assert [j.result for j in jobs] == [1, None, 1]
    assert isinstance(jobs[1].error, sqlite3.IntegrityError) and all(j.done for j in jobs)


def test_every_table_is_either_the_schools_data_or_the_boxs_own(tmp_path):
    """A new table must be placed: a restore copies the school's tables and keeps the box's
    own, so a table in neither list would be lost when a broken box is replaced."""
    db = open_db(tmp_path / "box.db")
    migrate(db)
    tables = {
        r[0]
        for r in db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'passages_%'"  # FTS5's own
            " AND name NOT LIKE 'item_search_%' AND name NOT LIKE 'resource_search_%'"
        )
    }
    placed = [*school_data.SCHOOL_TABLES, school_data.APPENDED, *school_data.BOX_TABLES]
    assert len(placed) == len(set(placed)), "a table is in two lists"
    assert tables == set(placed)


def test_a_soon_write_is_carried_by_the_next_write_or_by_itself_within_a_second(tmp_path):
    db = open_db(tmp_path / "box.db")
    migrate(db)
    reader = open_db(tmp_path / "box.db")

    def note(name: str):
        return lambda writer: writer.conn.execute(
            "INSERT INTO consents (feature, granted, set_at) VALUES (?, 1, 'now')", (name,)
        )

    def stored(name: str) -> bool:
        found = reader.conn.execute("SELECT 1 FROM consents WHERE feature = ?", (name,))
        return found.fetchone() is not None

    soon(db, note("carried"))
    grouped(db, note("carrier"))  # a request's own write takes the queued one along
    assert stored("carried") and stored("carrier")
    soon(db, note("alone"))
    deadline = time.monotonic() + 5
    while not stored("alone") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored("alone")  # nothing else wrote: the flusher did, in about SOON_S
