"""The hub's database connection: SQLite by default, PostgreSQL through a connection URL.

The hub's SQL is written once, in the part both speak (`?` placeholders, `ON CONFLICT`
upserts); this module holds the few differences: placeholders, how a write transaction
starts, how a box's row is locked for one bundle at a time, and the schema's types.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


class HubDatabaseError(RuntimeError):
    """The hub's database cannot be used; the message says what to do."""


class Row(tuple):
    """A result row readable by position and by column name, as sqlite3.Row is."""

    _names: list[str]

    def __new__(cls, names: list[str], values):
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(self._names.index(key))
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


class HubDB:
    """One connection, with the dialect's differences kept here."""

    def __init__(self, url: str, sqlite_path: Path):
        self.conn: Any  # psycopg's or sqlite3's connection: the methods used are the same
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            try:
                import psycopg

                self.conn = psycopg.connect(url, autocommit=True, row_factory=_pg_rows)
            except ImportError as error:
                raise HubDatabaseError(
                    "A PostgreSQL hub needs psycopg: pip install 'schoolbox[hub]'."
                ) from error
            except psycopg.OperationalError as error:
                raise HubDatabaseError(f"Cannot reach the hub's PostgreSQL: {error}") from error
        else:
            self.conn = sqlite3.connect(sqlite_path, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=10000")
        # A box's bundles are applied one at a time: SQLite's BEGIN IMMEDIATE already takes
        # the write lock; PostgreSQL locks the box's row.
        self.for_update = " FOR UPDATE" if self.postgres else ""

    def execute(self, sql: str, params: tuple = ()):
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, params)

    def begin(self) -> None:
        self.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def create(self, schema: str) -> None:
        """Create the tables (IF NOT EXISTS), in this dialect's types."""
        serial = "BIGSERIAL PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY"
        for statement in schema.replace("{serial}", serial).split(";"):
            if statement.strip():
                self.execute(statement)

    def close(self) -> None:
        self.conn.close()


def _pg_rows(cursor):
    names = [column.name for column in cursor.description or []]
    return lambda values: Row(names, values)
