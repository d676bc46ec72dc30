"""`python -m appliance.cli`: the same command as `schoolbox`."""

from appliance.cli import main

main(prog_name="schoolbox")
