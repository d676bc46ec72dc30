"""Boxes for federated tests: copies of a demo school seeded once, consenting to
federated training, with a training window of any hour."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from appliance.config import Config, ensure_secret
from appliance.demo.seed import seed
from appliance.store import audit, migrations, open_db, site, training_data, transaction


@pytest.fixture(scope="session")
def federated_template(tmp_path_factory) -> Path:
    """A demo school with 20 learners a class (about 2,000 answers), seeded once."""
    home = tmp_path_factory.mktemp("federated-template") / "home"
    home.mkdir()
    config = Config(home=home, testing=True)
    ensure_secret(config)
    db = open_db(config.db_path)
    migrations.migrate(db)
    seed(db, config, learners_per_class=20)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    return home


def make_box(template: Path, home: Path, consent: bool = True, plain: bool = False,
             **settings) -> Path:  # fmt: skip
    """A copy of the template at `home`, with federated consent as given and its
    schoolbox.toml holding `settings` (training any hour unless told otherwise; with
    `plain`, it also sends updates without secure aggregation)."""
    shutil.copytree(template, home)
    settings = {"federated_hours": "0-24", **settings}
    if plain:
        settings["federated_require_secure_aggregation"] = False
    lines = ["[schoolbox]"] + [f"{k} = {_toml(v)}" for k, v in settings.items()]
    (home / "schoolbox.toml").write_text("\n".join(lines) + "\n")
    db = open_db(home / "schoolbox.db")
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, training_data.FEATURE, consent)
        # Each copy is its own box (the template's id would make them one at the hub).
        db.conn.execute("UPDATE site SET box_id = ?", (str(uuid.uuid4()),))
    db.conn.close()
    return home


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, int | float) else f'"{value}"'


@pytest.fixture
def boxes(tmp_path, federated_template) -> list[Path]:
    """Three consenting boxes that also take part in plain FedAvg rounds."""
    return [make_box(federated_template, tmp_path / f"box{n}", plain=True) for n in range(3)]
