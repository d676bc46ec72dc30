"""The package boundaries hold when the code runs, not only in a linter's eyes.

Each headless entry point is imported in a fresh interpreter, and the modules it loaded
are checked: no web framework (Flask, Flask-Babel, Flask-WTF, werkzeug's router), and no
torch outside training. A function-level import or a package's __init__ that pulls the
web app in shows here, where a linter that reads only the top of a file would miss it.
The contracts in pyproject.toml ([tool.importlinter], `make test` runs lint-imports) say
the same rules module by module; and no import cycle is left, counting every import in a
file, function-level ones included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


WEB = ("flask", "flask_babel", "flask_wtf", "werkzeug.routing", "appliance.web")
TRAINING = ("torch", "opacus", "sklearn", "models.knowledge_tracing.training")

# Every headless entry point, and what it may load beyond the standard set.
HEADLESS = {
    "appliance.store": (),
    "appliance.store.users": (),
    "appliance.store.training_data": (),
    "appliance.config": (),
    "appliance.paths": (),
    "appliance.packs.importer": (),
    "appliance.practice": (),
    "appliance.knowledge.tracing": (),
    "appliance.knowledge.recommend": (),
    "appliance.knowledge.monitor": (),
    "appliance.tutor.conversation": (),
    "appliance.jobs": (),
    "appliance.health": (),
    "appliance.server": (),  # the supervisor: only its workers load the web app
    "appliance.cli": (),  # `schoolbox hub serve` and the rest start without the web app
    "sync.box.outbox": (),
    "sync.box.transport": (),
    "sync.box.updates": (),
    "sync.hub.app": (),
    "sync.hub.receive": (),
    "models.registry.installed": (),
    "models.registry.default": (),
    "models.tutor.service": (),
    "models.tutor.runtime": (),
    "models.knowledge_tracing.runtime": (),
    "models.knowledge_tracing.gate": (),
    "federated.node": (),
    "federated.district": (),
    "federated.client_app": TRAINING,  # the ClientApp trains: torch, Opacus
    "federated.server_app": TRAINING,  # the ServerApp starts from a torch model
}


def loaded_by(module: str, watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded after importing `module`."""
    probe = (
        f"import sys, json; import {module}; "
        f"print(json.dumps([m for m in {list(watched)!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_headless_entry_points_load_no_web_app_and_no_training():
    watched = WEB + TRAINING
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = dict(
            zip(HEADLESS, pool.map(lambda m: loaded_by(m, watched), HEADLESS), strict=True)
        )
    wrong = {
        module: [m for m in loaded if m not in HEADLESS[module]] for module, loaded in found.items()
    }
    assert {module: loaded for module, loaded in wrong.items() if loaded} == {}


def test_the_check_sees_the_web_app_where_it_is():
    assert {"flask", "flask_babel", "werkzeug.routing"} <= set(loaded_by("appliance.web.app", WEB))


def test_the_password_word_lists_load_only_where_a_password_is_checked():
    # zxcvbn's lists are 13 MB in each process that has them; only setting a password needs them.
    assert loaded_by("appliance.web.app", ("zxcvbn",)) == []
    assert loaded_by("appliance.cli", ("zxcvbn",)) == []
    checked = "appliance.store.users; appliance.store.users.validate_password('tembo kubwa juu 7')"
    assert loaded_by(checked, ("zxcvbn",)) == ["zxcvbn"]


def test_importing_appliance_loads_nothing_heavy():
    assert loaded_by("appliance", WEB + TRAINING + ("sqlite_utils", "onnxruntime")) == []


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every import cycle in `graph` (its strongly connected components of 2+ modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_is_left():
    graph = grimp.build_graph("appliance", "sync", "models", "federated", cache_dir=None)
    assert len(graph.modules) > 100
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function():
    graph = grimp.ImportGraph()
    for importer, imported in [("a.config", "b.outbox"), ("b.outbox", "b.collect"),
                               ("b.collect", "a.config"), ("a.web", "a.config")]:  # fmt: skip
        graph.add_import(importer=importer, imported=imported)
    assert cycles(graph) == [["a.config", "b.collect", "b.outbox"]]
