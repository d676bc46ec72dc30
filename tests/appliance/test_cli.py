"""The `schoolbox` command: init, content import, learner export and erase, user add."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.store import open_db
from appliance.store.migrations import CURRENT_VERSION
from tests.conftest import DEMO_PACK


@pytest.fixture
def run(tmp_path):
    home = tmp_path / "box"

    def invoke(*args, input=None):
        return CliRunner().invoke(main, ["--home", str(home), *args], input=input)

    invoke.home = home
    return invoke


def test_init_creates_the_site_secret_and_admin_once(run):
    result = run("init", "--site-name", "Hill School", "--generate-password")
    assert result.exit_code == 0, result.output
    password = re.search(r"shown once, write it down\): (\S+)", result.output).group(1)
    assert (run.home / "secret.key").stat().st_mode & 0o777 == 0o600
    db = open_db(run.home / "schoolbox.db")
    stored = db.conn.execute("SELECT password_hash FROM users WHERE username = 'admin'").fetchone()[
        0
    ]
    assert password not in stored and stored.startswith("scrypt:")
    again = run("init", "--site-name", "Hill School", "--generate-password")
    assert again.exit_code != 0 and "already set up" in again.output


def test_content_import_from_a_folder_and_refusal_of_a_bad_one(run, tmp_path):
    run("init", "--site-name", "Hill School", "--generate-password")
    ok = run("content", "import", str(DEMO_PACK))
    assert ok.exit_code == 0 and "added to version 1.0.0" in ok.output
    same = run("content", "import", str(DEMO_PACK))
    assert same.exit_code == 0 and "nothing changed" in same.output
    bad = tmp_path / "bad"
    shutil.copytree(DEMO_PACK, bad)
    (bad / "skills.yaml").unlink()
    refused = run("content", "import", str(bad))
    assert refused.exit_code == 1 and "skills.yaml: is missing" in refused.output


def test_learner_export_and_erase(run, tmp_path):
    run("init", "--site-name", "Hill School", "--generate-password")
    from appliance.store import audit, transaction, users

    db = open_db(run.home / "schoolbox.db")
    with transaction(db):
        learner_id = users.create_learner(db, audit.SYSTEM, "Nia K.", "1234", b"k" * 32)
    out = tmp_path / "nia.json"
    exported = run("learner", "export", str(learner_id), "-o", str(out))
    assert exported.exit_code == 0 and json.loads(out.read_text())["learner"]["name"] == "Nia K."
    assert run("learner", "erase", str(learner_id), input="n\n").exit_code == 1  # asked, declined
    assert run("learner", "erase", str(learner_id), "--yes").exit_code == 0
    assert run("learner", "export", str(learner_id)).exit_code == 1


def test_user_add_shows_the_password_once(run):
    run("init", "--site-name", "Hill School", "--generate-password")
    result = run("user", "add", "amara", "--name", "Amara O.")
    assert result.exit_code == 0 and "Password (shown once)" in result.output
    assert run("user", "add", "amara", "--name", "Amara O.").exit_code == 1


def test_serve_refuses_a_database_from_a_newer_schoolbox(run):
    run("init", "--site-name", "Hill School", "--generate-password")
    db = open_db(run.home / "schoolbox.db")
    db.execute(f"PRAGMA user_version={CURRENT_VERSION + 1}")
    db.conn.close()
    result = run("serve", "--port", "1")
    assert result.exit_code == 1 and "newer Schoolbox" in result.output
