"""The federated task on a real demo box: weights travel as arrays of the model's own
shapes, a local round changes them and improves the score on the box's recent answers."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.store import audit, site, training_data, transaction
from federated import privacy, task


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
    local = task.train_locally(start, data, epochs=3)
    trained, examples = local.arrays, local.answers
    after = task.evaluate_recent(trained, data)
    assert examples == sum(cut for cut in data.recent_from)
    assert local.learners == len(data.learners) and local.epsilon == 0
    assert before["answers"] == after["answers"] == data.answers - examples > 50
    assert any(not np.array_equal(a, b) for a, b in zip(start, trained, strict=True))
    assert after["auc"] > before["auc"] + 0.02


@pytest.mark.slow  # DP-SGD rounds (torch, Opacus)
def test_a_private_run_spends_no_more_than_its_budget_over_all_its_rounds(data):
    budget = privacy.Budget(epsilon=8.0)
    arrays, history = task.weights(task.new_model()), []
    spent = []
    for round_ in (1, 2):
        local = task.train_locally(arrays, data, budget=budget, rounds=2, history=history,
                                   seed=round_)  # fmt: skip
        arrays, history = local.arrays, local.history
        spent.append(local.epsilon)
    assert len(history) == 2 and history[0][0] == pytest.approx(history[1][0], rel=0.03)
    assert 0 < spent[0] < spent[1] <= budget.epsilon * 1.01
    assert spent[1] > budget.epsilon * 0.9  # the noise is not wastefully high either


@pytest.mark.slow  # DP-SGD rounds (torch, Opacus)
def test_the_noise_takes_what_earlier_rounds_spent_into_account():
    budget = privacy.Budget(epsilon=3.0)
    rate = privacy.sample_rate(budget, 400)
    fresh = privacy.noise_for(budget, rate, 50)
    assert privacy.spent([(fresh, rate, 50)], budget.delta) <= 3.0
    greedy = [(fresh * 0.9, rate, 25)]  # an earlier round spent more than its share
    after = privacy.noise_for(budget, rate, 25, greedy)
    assert after > fresh and privacy.spent([*greedy, (after, rate, 25)], budget.delta) <= 3.0
    with pytest.raises(ValueError, match="already spent"):
        privacy.noise_for(budget, rate, 25, [(0.3, rate, 500)])


@pytest.mark.slow  # DP-SGD rounds (torch, Opacus)
def test_more_privacy_means_more_noise():
    rate = privacy.sample_rate(privacy.Budget(epsilon=1.0), 400)
    assert rate == privacy.MAX_RATE  # a quarter of 400, under 128 learners a step
    noise = {e: privacy.noise_for(privacy.Budget(epsilon=e), rate, 100) for e in (1, 3, 8)}
    assert noise[1] > noise[3] > noise[8] > 0.3


def test_a_small_school_still_takes_several_steps_an_epoch():
    budget = privacy.Budget(epsilon=8.0)
    assert privacy.sample_rate(budget, 40) == privacy.MAX_RATE == 0.25
    assert privacy.steps_per_epoch(privacy.sample_rate(budget, 40)) == 4
    assert privacy.sample_rate(budget, 1024) == 128 / 1024
