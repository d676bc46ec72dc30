"""The federated task on a real demo box: weights travel as arrays of the model's own
shapes, a local round changes them and improves the score on the box's recent answers."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.store import audit, site, training_data, transaction
from federated import task


@pytest.fixture
def data(config, db):
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, training_data.FEATURE, True)
    return training_data.read(config.db_path)


def test_weights_travel_as_arrays_of_the_models_own_shapes():
    model = task.new_model()
    arrays = task.weights(model)
    shapes = [tuple(p.shape) for p in model.state_dict().values()]
    assert [a.shape for a in arrays] == shapes and all(a.dtype == np.float32 for a in arrays)
    again = task.weights(task.with_weights(arrays))
    assert all(np.array_equal(a, b) for a, b in zip(arrays, again, strict=True))
    with pytest.raises(ValueError, match="shape"):
        task.with_weights([np.zeros((2, 2), np.float32)] + arrays[1:])


def test_a_local_round_learns_from_older_answers_and_scores_on_recent_ones(data):
    start = task.weights(task.new_model())
    before = task.evaluate_recent(start, data)
    trained, examples = task.train_locally(start, data, epochs=3)
    after = task.evaluate_recent(trained, data)
    assert examples == sum(cut for cut in data.recent_from)
    assert before["answers"] == after["answers"] == data.answers - examples > 50
    assert any(not np.array_equal(a, b) for a, b in zip(start, trained, strict=True))
    assert after["auc"] > before["auc"] + 0.02
