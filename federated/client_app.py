"""The box's ClientApp: trains the shared model on this box's answers and scores it.

It reads the box through appliance/store/training_data.py only (read-only, consent
first), waits for the school's training window and for the classroom to be quiet
(federated/gate.py), and replies with nothing but the model's arrays and a few counts and
scores. It speaks two layouts: the Message API's ("arrays", "config") for plain and DP
runs, and the legacy one that Flower's SecAgg+ workflow and `secaggplus_mod` use, whose
reply the mod masks before it leaves the box.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Code, EvaluateRes, FitRes, Status, ndarrays_to_parameters
from flwr.common import parameters_to_ndarrays as parameters_to_arrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as legacy

from appliance import config as box_config
from appliance.store import training_data
from federated import gate, privacy, task
from sync.files import write_json


def secagg_when_asked(msg: Message, context: Context, call_next) -> Message:
    """Flower's `secaggplus_mod` for the rounds of a SecAgg+ run; other messages as they are."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


app = ClientApp(mods=[secagg_when_asked])

PRIVACY_FILE = "federated-privacy.json"  # this box's DP steps per run, in its home
MIN_LEARNERS = 10  # fewer, and a box sits out: its update would be too close to each one


def box_home(context: Context) -> Path:
    """The box this node serves: `box-home` in its node config (`schoolbox federated
    join` sets it); under the Simulation Engine, partition N is the N-th home listed in
    SCHOOLBOX_FEDERATED_BOXES."""
    if "box-home" in context.node_config:
        return Path(str(context.node_config["box-home"]))
    homes = os.environ.get("SCHOOLBOX_FEDERATED_BOXES", "").split(os.pathsep)
    return Path(homes[int(context.node_config["partition-id"])])


def _ready(context: Context) -> tuple[box_config.Config, training_data.TrainingData]:
    """This box's settings and training data once the gate lets it train; NotNow otherwise."""
    config = box_config.load(home=box_home(context))
    window = gate.Window(
        hours=config.federated_hours,
        weekends=config.federated_weekends,
        idle_minutes=config.federated_idle_minutes,
        wait_seconds=config.federated_wait_seconds,
    )
    gate.check(config.db_path, window)
    os.nice(max(0, 10 - os.nice(0)))  # below the web app, whatever started us
    torch.set_num_threads(max(1, config.federated_threads))
    data = training_data.read(config.db_path)
    if data is None:  # consent withdrawn since the gate looked
        raise gate.NotNow("This school has not consented to federated training.")
    if len(data.learners) < MIN_LEARNERS:
        # An average over a handful of learners is close to each one's own answers.
        raise gate.NotNow(f"Fewer than {MIN_LEARNERS} learners have answered on this box.")
    return config, data


def _insist(config: box_config.Config, run: dict, masked: bool) -> None:
    """The school's own conditions, whatever the district's run asks for."""
    if config.federated_require_secure_aggregation and not masked:
        raise gate.NotNow("This school sends its update only under secure aggregation.")
    wanted = float(run.get("dp-epsilon", 0) or 0)
    if config.federated_max_epsilon > 0 and not 0 < wanted <= config.federated_max_epsilon:
        raise gate.NotNow(
            f"This school trains only with differential privacy at epsilon "
            f"{config.federated_max_epsilon:g} or less (the run asked for {wanted:g})."
        )


def _incoming(msg: Message, kind: str) -> tuple[list[np.ndarray], dict, bool]:
    """(arrays, config, legacy?) from a train or evaluate message in either layout."""
    if "arrays" in msg.content.array_records:
        config = dict(msg.content.config_records.get("config", ConfigRecord()))
        return msg.content.array_records["arrays"].to_numpy_ndarrays(), config, False
    ins = (legacy.recorddict_to_fitins if kind == "train" else legacy.recorddict_to_evaluateins)(
        msg.content, keep_input=True
    )
    return parameters_to_arrays(ins.parameters), dict(ins.config), True


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays, run, is_legacy = _incoming(msg, "train")
    config, data = _ready(context)
    _insist(config, run, masked=RECORD_KEY_CONFIGS in msg.content.config_records)
    budget = _budget(run)
    spent = privacy_history(config.home, context.run_id)
    local = task.train_locally(
        arrays, data,
        epochs=int(run.get("local-epochs", 1)),
        lr=float(run.get("learning-rate", 3e-3)),
        seed=int(run.get("server-round", 1)),
        budget=budget,
        rounds=int(run.get("num-server-rounds", 1)),
        history=spent,
        keep_going=gate.watch(config.db_path),
    )  # fmt: skip
    if budget is not None:
        keep_privacy_history(config.home, context.run_id, local.history)
    weight = min(local.learners, task.MAX_WEIGHT)
    metrics: dict[str, Any] = {"num-examples": weight, "answers": local.answers,
                               "epsilon": local.epsilon}  # fmt: skip
    if is_legacy:
        fit = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(local.arrays), weight,
                     metrics)  # fmt: skip
        return Message(legacy.fitres_to_recorddict(fit, keep_input=False), reply_to=msg)
    content = RecordDict({"arrays": ArrayRecord(local.arrays), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def privacy_history(home: Path, run_id: int) -> list[tuple[float, float, int]]:
    """This box's DP steps in earlier rounds of run `run_id`: kept on disk, so a restarted
    node still counts what it spent."""
    path = home / PRIVACY_FILE
    runs = json.loads(path.read_text()) if path.exists() else {}
    return [tuple(step) for step in runs.get(str(run_id), [])]


def keep_privacy_history(home: Path, run_id: int, history: list) -> None:
    """Record the run's steps (before the update is sent: an update is never released
    without its privacy cost on disk). Only the latest runs are kept."""
    path = home / PRIVACY_FILE
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[str(run_id)] = [list(step) for step in history]
    write_json(path, dict(list(runs.items())[-20:]))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    arrays, _, is_legacy = _incoming(msg, "evaluate")
    _, data = _ready(context)
    scored = task.evaluate_recent(arrays, data)
    if is_legacy:
        res = EvaluateRes(Status(Code.OK, ""), 0.0, scored["answers"], {"auc": scored["auc"]})
        return Message(legacy.evaluateres_to_recorddict(res), reply_to=msg)
    metrics = MetricRecord({"auc": scored["auc"], "num-examples": scored["answers"]})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


def _budget(config: dict) -> privacy.Budget | None:
    epsilon = float(config.get("dp-epsilon", 0) or 0)
    if epsilon <= 0:
        return None
    return privacy.Budget(epsilon=epsilon, delta=float(config.get("dp-delta", 1e-5)))
