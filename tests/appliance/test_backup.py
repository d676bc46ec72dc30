"""`schoolbox backup OUT`: a consistent copy of the box's database while it serves."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from appliance.cli import main


def test_a_backup_is_the_database_as_it_was_and_never_overwrites_a_file(config, db, tmp_path):
    db.conn.execute("CREATE TABLE backup_probe (note TEXT)")
    db.conn.execute("INSERT INTO backup_probe VALUES ('answered before the copy')")
    db.conn.commit()
    out = tmp_path / "school.db"
    runner = CliRunner()
    result = runner.invoke(main, ["--home", str(config.home), "backup", str(out)])
    assert result.exit_code == 0 and "Copied the database" in result.output, result.output
    with sqlite3.connect(out) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT note FROM backup_probe").fetchall() == [
            ("answered before the copy",)
        ]
    again = runner.invoke(main, ["--home", str(config.home), "backup", str(out)])
    assert again.exit_code == 1 and "exists already" in again.output
