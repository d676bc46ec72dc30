"""The `schoolbox` command: init, content import, learner export and erase, user add."""

from __future__ import annotations

import json
import re
import shutil
import socket

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
    assert ok.exit_code == 0 and "added to version 1.1.0" in ok.output
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


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[schoolbox\nport = 8080\n", "not valid TOML"),
        ('[schoolbox]\nport = "eighty"\n', "port must be a whole number, not 'eighty'"),
        ("[schoolbox]\ntutor_service = 3\n", "tutor_service must be true or false, not 3"),
        ("[schoolbox]\nprot = 8080\n", "unknown setting(s): prot"),
        ("schoolbox = 1\n", "[schoolbox] must be a table"),
    ],
)
def test_a_bad_schoolbox_toml_is_one_line_naming_the_file(run, toml, problem):
    run.home.mkdir()
    (run.home / "schoolbox.toml").write_text(toml)
    result = run("serve", "--port", "1")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1
    assert f"{run.home / 'schoolbox.toml'}: " in result.output and problem in result.output


def test_a_wrong_setting_in_the_environment_names_the_variable(run, monkeypatch):
    monkeypatch.setenv("SCHOOLBOX_WORKERS", "many")
    result = run("serve", "--port", "1")
    assert result.exit_code == 1
    assert result.output == "Error: SCHOOLBOX_WORKERS: workers must be a whole number, not 'many'\n"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the database file is empty (0 bytes)"),
        (b"not sqlite" * 500, "not a Schoolbox database"),
    ],
)
def test_an_empty_or_garbage_database_is_refused_and_left_as_it_was(run, content, problem):
    run.home.mkdir()
    (run.home / "schoolbox.db").write_bytes(content)
    for args in (("serve", "--port", "1"), ("init", "--site-name", "X", "--generate-password")):
        result = run(*args)
        assert result.exit_code == 1 and result.output.count("\n") == 1
        assert f"{run.home / 'schoolbox.db'}: {problem}" in result.output
    assert (run.home / "schoolbox.db").read_bytes() == content  # never replaced by a new school
    assert not (run.home / "secret.key").exists()


def test_serve_refuses_an_empty_secret_key_and_keeps_it(run):
    run("init", "--site-name", "Hill School", "--generate-password")
    (run.home / "secret.key").write_text("")
    result = run("serve", "--port", "1")
    assert result.exit_code == 1 and "secret.key: the secret key is empty" in result.output
    assert (run.home / "secret.key").read_text() == ""  # not silently replaced


def test_serve_warns_when_others_can_read_the_secret_key(run):
    run("init", "--site-name", "Hill School", "--generate-password")
    (run.home / "secret.key").chmod(0o644)
    with socket.socket() as taken:  # stops `serve` right after its start-up checks
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("serve", "--host", "127.0.0.1", "--port", str(taken.getsockname()[1]))
    assert "can be read by other users of this computer" in result.output
    assert "chmod 600" in result.output and result.exit_code == 1


def test_serve_says_at_start_why_the_box_will_not_be_ready(run):
    run("init", "--site-name", "Hill School", "--generate-password")
    from models.registry import installed as store

    manifest = store.active(run.home, "knowledge-tracing")
    store.file_path(run.home, manifest).unlink()
    with socket.socket() as taken:  # stops `serve` right after its start-up checks
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("serve", "--host", "127.0.0.1", "--port", str(taken.getsockname()[1]))
    assert (
        "Warning: not ready: the active knowledge-tracing model's file is missing" in result.output
    )
