"""The median and range over repeated runs: how every benchmark here quotes a figure."""

from __future__ import annotations

import statistics


def spread(values: list) -> dict:
    """{"median", "min", "max"} of the values that were measured (None: not measured)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def over_runs(runs: list[dict]) -> dict:
    """Each figure of the runs' flat {name: value} dicts as its median and range."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    return {name: spread([run.get(name) for run in runs]) for name in names}


def as_text(figure: dict) -> str:
    """ "3.5 (3.1-4.3)": the median and, when runs differ, the range."""
    if figure["median"] is None:
        return "-"
    if figure["min"] == figure["max"]:
        return f"{figure['median']:g}"
    return f"{figure['median']:g} ({figure['min']:g}-{figure['max']:g})"
