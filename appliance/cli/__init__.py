"""The `schoolbox` command: a thin layer over the library functions the tests call too.

Commands are grouped by who runs them: box.py (a school's admin, on the box),
os_update.py (the box's system updates), school_backup.py (backups and restore),
district.py (district IT, at the hub) and developer.py (trying and developing the box).
`schoolbox --help` lists them together, as one command.
"""

from __future__ import annotations

from pathlib import Path

import click

from appliance import config as config_module
from appliance.cli import box, developer, district, os_update, school_backup
from appliance.cli.common import OPERATOR_ERRORS
from models import offline


class _Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OPERATOR_ERRORS as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=_Main)
@click.option("--home", type=click.Path(path_type=Path), help="Data directory (SCHOOLBOX_HOME).")
@click.pass_context
def main(ctx: click.Context, home: Path | None) -> None:
    """Schoolbox: lessons, practice and progress for a school, with no internet."""
    offline.apply()  # telemetry off in this process and every one it starts (hub included)
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_module.load(home=home)


@main.group()
def federated() -> None:
    """Federated training of the knowledge-tracing model (Flower)."""


for _command in (
    *box.COMMANDS,
    *school_backup.COMMANDS,
    *os_update.COMMANDS,
    *district.COMMANDS,
    *developer.COMMANDS,
):
    main.add_command(_command)
for _command in (*box.FEDERATED, *district.FEDERATED):
    federated.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
