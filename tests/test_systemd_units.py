"""The image's systemd units start commands that exist, with options the CLI accepts."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main

UNITS = sorted((Path(__file__).resolve().parent.parent / "image" / "systemd").glob("*.service"))


def exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(unit)
    return shlex.split(parser["Service"]["ExecStart"])


def test_the_image_has_a_unit_for_the_web_app_and_for_federated_training():
    assert {u.name for u in UNITS} >= {"schoolbox.service", "schoolbox-federated.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_unit_starts_a_schoolbox_command_that_accepts_its_options(unit):
    command = exec_start(unit)
    assert command[0] == "/opt/schoolbox/.venv/bin/schoolbox"
    # --help after the unit's own arguments: click parses them all, then prints help.
    result = CliRunner().invoke(main, [*command[1:], "--help"], env={"SCHOOLBOX_HUB_HOME": "/x"})
    assert result.exit_code == 0, result.output
