"""The real ClientApp on a real box: what a box sends is only the model's arrays and a
few scalar metrics; it sits a round out without consent, outside its window, or while a
class is on."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import ndarrays_to_parameters
from flwr.common.typing import FitIns
from flwr.compat.common import recorddict_compat as legacy
from flwr.supercore.task_identity import TaskIdentity

from appliance.store import attempts, audit, content, open_db, training_data, users
from federated import client_app, gate, task
from tests.federated.conftest import make_box


@pytest.fixture(autouse=True)
def as_a_task():
    """Messages made outside a running Flower task need the process's task identity."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def context(box) -> Context:
    return Context(run_id=1, node_id=7, node_config={"box-home": str(box)}, state=RecordDict(),
                   run_config={})  # fmt: skip


def train_message(arrays, **config) -> Message:
    content = RecordDict({"arrays": ArrayRecord(arrays),
                          "config": ConfigRecord({"server-round": 1, **config})})  # fmt: skip
    return Message(content=content, dst_node_id=7, message_type="train")


def assert_only_model_arrays_and_scalars(content: RecordDict, shapes: list[tuple]) -> None:
    assert set(content.config_records) <= {"fitres.status", "fitres.metrics"}
    for record in content.config_records.values():  # the legacy layout's status and metrics
        assert all(isinstance(v, int | float | str) for v in record.values())
    arrays = [a for record in content.array_records.values() for a in record.to_numpy_ndarrays()]
    assert [a.shape for a in arrays] == shapes and all(a.dtype == np.float32 for a in arrays)
    for record in content.metric_records.values():
        assert all(isinstance(v, int | float) for v in record.values())


def test_a_box_sends_only_arrays_of_the_models_shapes_and_scalar_metrics(tmp_path,
                                                                         federated_template):  # fmt: skip
    box = make_box(federated_template, tmp_path / "box", plain=True)
    start = task.weights(task.new_model())
    shapes = [a.shape for a in start]
    reply = client_app.app(train_message(start, **{"local-epochs": 1}), context(box))
    assert not reply.has_error(), reply.error
    assert_only_model_arrays_and_scalars(reply.content, shapes)
    assert set(reply.content.metric_records["metrics"]) == {"num-examples", "answers", "epsilon"}
    # The legacy layout SecAgg+ uses carries the same and no more.
    fit = FitIns(ndarrays_to_parameters(start), {"server-round": 1, "local-epochs": 1})
    message = Message(content=legacy.fitins_to_recorddict(fit, keep_input=True), dst_node_id=7,
                      message_type="train")  # fmt: skip
    reply = client_app.app(message, context(box))
    assert not reply.has_error(), reply.error
    assert_only_model_arrays_and_scalars(reply.content, shapes)


@pytest.mark.slow  # DP-SGD rounds (torch, Opacus)
def test_a_box_insists_on_secure_aggregation_and_its_privacy_budget(tmp_path,
                                                                     federated_template):  # fmt: skip
    start = task.weights(task.new_model())
    strict = make_box(federated_template, tmp_path / "strict")  # the default: SecAgg+ only
    with pytest.raises(gate.NotNow, match="only under secure aggregation"):
        client_app.app(train_message(start), context(strict))
    private = make_box(federated_template, tmp_path / "private", plain=True,
                       federated_max_epsilon=3.0)  # fmt: skip
    with pytest.raises(gate.NotNow, match="epsilon 3 or less \\(the run asked for 0\\)"):
        client_app.app(train_message(start), context(private))
    with pytest.raises(gate.NotNow, match="the run asked for 8"):
        client_app.app(train_message(start, **{"dp-epsilon": 8.0}), context(private))
    reply = client_app.app(train_message(start, **{"dp-epsilon": 3.0}), context(private))
    assert 0 < reply.content.metric_records["metrics"]["epsilon"] <= 3.0


def test_a_box_with_a_handful_of_learners_sits_out(tmp_path, federated_template):
    box = make_box(federated_template, tmp_path / "box", plain=True)
    db = open_db(box / "schoolbox.db")
    learners = [r[0] for r in db.conn.execute("SELECT DISTINCT learner_id FROM attempts")]
    for learner in learners[9:]:
        users.erase_learner(db, audit.SYSTEM, learner)
    db.conn.close()
    with pytest.raises(gate.NotNow, match="Fewer than 10 learners"):
        client_app.app(train_message(task.weights(task.new_model())), context(box))


def test_training_stops_when_a_class_starts(tmp_path, federated_template):
    box = make_box(federated_template, tmp_path / "box")
    keep_going = gate.watch(box / "schoolbox.db", every_s=0)
    keep_going()  # quiet: nothing happens
    db = open_db(box / "schoolbox.db")
    learner, item = db.conn.execute("SELECT learner_id, item_id FROM attempts LIMIT 1").fetchone()
    attempts.record(db, learner, content.item(db, item), "1", True, 0, 900, None)
    db.conn.close()
    with pytest.raises(gate.NotNow, match="A class started"):
        keep_going()


def test_a_box_without_consent_trains_nothing(tmp_path, federated_template):
    box = make_box(federated_template, tmp_path / "box", consent=False)
    # Raised here; under Flower the box replies with this error and the round goes on.
    with pytest.raises(gate.NotNow, match="not consented"):
        client_app.app(train_message(task.weights(task.new_model())), context(box))


def test_a_box_sits_the_round_out_while_a_class_is_on(tmp_path, federated_template):
    box = make_box(federated_template, tmp_path / "box", federated_wait_seconds=0)
    db = open_db(box / "schoolbox.db")
    learner, item = db.conn.execute(
        "SELECT a.learner_id, a.item_id FROM attempts a LIMIT 1").fetchone()  # fmt: skip
    attempts.record(db, learner, content.item(db, item), "1", True, 0, 900, None)
    db.conn.close()
    with pytest.raises(gate.NotNow, match="Learners are using the box"):
        client_app.app(train_message(task.weights(task.new_model())), context(box))


def test_a_box_outside_its_window_sits_the_round_out(tmp_path, federated_template):
    hour = datetime.now().astimezone().hour
    closed = f"{(hour + 2) % 24}-{(hour + 3) % 24}"
    box = make_box(federated_template, tmp_path / "box", federated_hours=closed,
                   federated_weekends=False)  # fmt: skip
    with pytest.raises(gate.NotNow, match="Outside this school's training window"):
        client_app.app(train_message(task.weights(task.new_model())), context(box))


@pytest.mark.parametrize(
    ("hours", "weekends", "moment", "allowed"),
    [
        ("18-6", False, "2026-11-25 19:00", True),  # a Wednesday evening
        ("18-6", False, "2026-11-26 05:59", True),
        ("18-6", False, "2026-11-25 06:00", False),
        ("18-6", False, "2026-11-25 12:00", False),
        ("18-6", True, "2026-11-28 12:00", True),  # Saturday noon
        ("9-17", False, "2026-11-25 09:00", True),
        ("9-17", False, "2026-11-25 17:00", False),
        ("0-24", False, "2026-11-25 12:00", True),
        ("0-0", True, "2026-11-25 12:00", False),  # weekends only
    ],
)
def test_the_training_window(hours, weekends, moment, allowed):
    window = gate.Window(hours=hours, weekends=weekends)
    assert window.allows(datetime.fromisoformat(moment)) is allowed


def test_a_malformed_window_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="like 18-6"):
        gate.Window(hours="evenings")
    with pytest.raises(ValueError, match="like 18-6"):
        gate.Window(hours="18-30")


def test_the_gate_waits_for_a_class_to_finish_then_lets_the_box_train(tmp_path,
                                                                       federated_template):  # fmt: skip
    box = make_box(federated_template, tmp_path / "box")
    latest = training_data.last_answer_at(box / "schoolbox.db")
    later = latest + timedelta(minutes=11)
    # window check, deadline, class on, deadline check, class over
    moments = iter([latest, latest, latest, latest, later])
    slept = []
    gate.check(box / "schoolbox.db", gate.Window(hours="0-24", idle_minutes=10),
               clock=lambda: next(moments), sleep=slept.append)  # fmt: skip
    assert len(slept) == 1, "it waited once for the class, then let the box train"
