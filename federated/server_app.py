"""The district's ServerApp: FedAvg over the boxes that take part, then the global model.

Plain and DP runs use the Message API's FedAvg; with `secure-aggregation` the rounds go
through Flower's SecAgg+ workflow (the only place Flower offers it), so the district
sees only the sum of the boxes' updates. Either way the run scores the starting model
and every round's global model on each box's held-out recent answers (weighted AUC),
and writes the final weights and a summary (`run.json`) to the `output` folder, from
which `schoolbox federated run` exports, signs and ships the model.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy_strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from federated import task

log = logging.getLogger("schoolbox.federated")


def make_app(overrides: dict | None = None) -> ServerApp:
    """The ServerApp; `overrides` replace run-config values, for callers of Flower's
    Python simulation API (bench/federated.py), which cannot pass a run config."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        run(grid, context, {**dict(context.run_config), **(overrides or {})})

    return server_app


def box_settings(config: dict) -> dict:
    """What every box is told each round (besides the weights)."""
    return {
        "local-epochs": int(config.get("local-epochs", 1)),
        "learning-rate": float(config.get("learning-rate", 3e-3)),
        "num-server-rounds": int(config.get("num-server-rounds", 2)),
        "dp-epsilon": float(config.get("dp-epsilon", 0.0)),
        "dp-delta": float(config.get("dp-delta", 1e-5)),
    }


def run(grid: Grid, context: Context, config: dict) -> dict:
    """A whole training run; returns (and writes to `output`) its summary."""
    rounds = int(config.get("num-server-rounds", 2))
    min_nodes = int(config.get("min-nodes", 2))
    timeout = float(config.get("round-timeout", 1800))
    initial = _initial_weights(str(config.get("initial", "")))
    scorer = _fedavg(min_nodes)
    before = _score(grid, scorer, initial, timeout)
    if config.get("secure-aggregation"):
        final, history = _run_secagg(grid, context, config, initial, rounds, min_nodes, timeout)
    else:
        final, history = _run_fedavg(grid, config, initial, rounds, min_nodes, timeout)
    summary = {
        "complete": _complete(history, rounds, min_nodes, before),
        "rounds": rounds,
        "secure_aggregation": bool(config.get("secure-aggregation")),
        "settings": box_settings(config),
        "initial": before,
        "history": history,
        "final": history[-1] if history else {},
        "epsilon": max((h.get("epsilon", 0.0) for h in history), default=0.0),
    }
    _write(Path(str(config.get("output", ""))), final, summary)
    return summary


class AtLeastFedAvg(FedAvg):
    """FedAvg that keeps the previous global model when fewer than `min_train_nodes`
    boxes replied to a round (Flower's FedAvg averages whatever came back: one box's
    update would become the district's model, unmasked by any crowd)."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        usable = [r for r in replies if not r.has_error()]
        if len(usable) < self.min_train_nodes:
            log.warning("round %s: %s box(es) replied, fewer than %s; the model is unchanged",
                        server_round, len(usable), self.min_train_nodes)  # fmt: skip
            return None, MetricRecord({"boxes_trained": len(usable), "skipped": 1})
        return super().aggregate_train(server_round, replies)


def _fedavg(min_nodes: int) -> FedAvg:
    return AtLeastFedAvg(
        fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes, min_available_nodes=min_nodes,
        train_metrics_aggr_fn=_train_metrics, evaluate_metrics_aggr_fn=_evaluate_metrics,
    )  # fmt: skip


def _run_fedavg(grid, config, initial, rounds, min_nodes, timeout) -> tuple[list, list[dict]]:
    result = _fedavg(min_nodes).start(
        grid=grid,
        initial_arrays=ArrayRecord(initial),
        num_rounds=rounds,
        timeout=timeout,
        train_config=ConfigRecord(box_settings(config)),
    )
    history = [
        {"round": r, **dict(result.train_metrics_clientapp.get(r, {})),
         **dict(result.evaluate_metrics_clientapp.get(r, {}))}
        for r in range(1, rounds + 1)
    ]  # fmt: skip
    return result.arrays.to_numpy_ndarrays(), history


def _run_secagg(grid, context, config, initial, rounds, min_nodes, timeout):
    """Rounds through SecAgg+: each box masks its update (secaggplus_mod) so that only
    the sum can be unmasked, even when up to (shares - threshold) boxes drop out."""
    settings = box_settings(config)
    strategy = legacy_strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=min_nodes,
        min_evaluate_clients=min_nodes, min_available_clients=min_nodes,
        initial_parameters=ndarrays_to_parameters(initial),
        on_fit_config_fn=lambda r: {**settings, "server-round": r},
        on_evaluate_config_fn=lambda r: {"server-round": r},
        fit_metrics_aggregation_fn=lambda pairs: dict(_train_metrics_of([m for _, m in pairs])),
        evaluate_metrics_aggregation_fn=_legacy_evaluate_metrics,
    )  # fmt: skip
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=rounds, round_timeout=timeout),
        strategy=strategy,
    )
    shares, threshold = secagg_shares(config, min_nodes)
    workflow = SecAggPlusSurvivingEarlyDropouts(
        num_shares=shares,
        reconstruction_threshold=threshold,
        max_weight=task.MAX_WEIGHT,
        timeout=timeout,
    )
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    final = legacy.state.array_records["parameters"].to_numpy_ndarrays()
    history = []
    for r in range(1, rounds + 1):
        row = {"round": r}
        for source in (legacy.history.metrics_distributed_fit, legacy.history.metrics_distributed):
            row.update({k: v for k, pairs in source.items() for rr, v in pairs if rr == r})
        history.append(row)
    return final, history


class SecAggPlusSurvivingEarlyDropouts(SecAggPlusWorkflow):
    """Flower 1.42's SecAgg+ workflow, but a box lost before it shared its key (during
    setup or key sharing) leaves the round instead of failing it. No box masked its update
    against such a box (a box masks only against those whose shares reached it), so there
    is nothing of it to unmask; Flower still looks for `threshold` shares of its key, finds
    none and halts the round ("Not enough shares to recover secret")."""

    def setup_stage(self, grid, context, state) -> bool:
        super().setup_stage(grid, context, state)
        return _forget_lost(self, state)

    def share_keys_stage(self, grid, context, state) -> bool:
        super().share_keys_stage(grid, context, state)
        return _forget_lost(self, state)


def _forget_lost(workflow: SecAggPlusWorkflow, state) -> bool:
    """Drop boxes that did not answer from the round's sampled set and from every
    neighbourhood; then, as Flower does, check each remaining box's key can be rebuilt."""
    lost = state.sampled_node_ids - state.active_node_ids
    state.sampled_node_ids = set(state.active_node_ids)
    for node_id in state.sampled_node_ids:
        state.nid_to_neighbours[node_id] = state.nid_to_neighbours[node_id] - lost
    if lost:
        log.warning("SecAgg+: %s box(es) left the round before sharing their keys", len(lost))
    if len(state.sampled_node_ids) < state.threshold:
        return False
    return workflow._check_threshold(state)  # noqa: SLF001 - Flower's own check, unchanged


def secagg_shares(config: dict, min_nodes: int) -> tuple[int, int]:
    """SecAgg+'s (shares, threshold): each box's masking key is split among `shares` boxes,
    and `threshold` of those shares rebuild it. A round survives (shares - threshold) boxes
    dropping out; the district must win over `threshold` boxes to unmask one box's update.
    Two thirds keeps that a majority and lets a third of a round's schools drop (a school
    that loses power or its link mid-round is common), where shares - 1 lets only one."""
    shares = int(config.get("secagg-shares", 0)) or max(min_nodes, 3)
    threshold = int(config.get("secagg-threshold", 0)) or max(2, math.ceil(2 * shares / 3))
    return shares, threshold


def _complete(history: list[dict], rounds: int, min_nodes: int, before: dict) -> str:
    """ "yes", or why this run's model must not be shipped."""
    if len(history) < rounds:
        return f"only {len(history)} of {rounds} rounds finished"
    short = [
        h["round"] for h in history if h.get("boxes_trained", 0) < min_nodes or h.get("skipped")
    ]
    if short:
        return f"rounds {short} had fewer than {min_nodes} boxes"
    final, initial = history[-1].get("auc"), before.get("auc")
    if final is None or math.isnan(final):
        return "the final model was not scored on any box"
    if initial is None or math.isnan(initial):
        return "the starting model was not scored on any box, so nothing shows the run beat it"
    if final <= initial:  # a run that did not beat its start is not worth a box's download
        return f"the final model did not beat the start ({final:.4f} <= {initial:.4f})"
    return "yes"


def _score(grid: Grid, strategy: FedAvg, arrays: list, timeout: float) -> dict:
    """The boxes' weighted AUC of `arrays` on their held-out recent answers."""
    messages = strategy.configure_evaluate(0, ArrayRecord(arrays), ConfigRecord(), grid)
    replies = grid.send_and_receive(messages, timeout=timeout)
    metrics = strategy.aggregate_evaluate(0, replies)
    return dict(metrics or {})


def _train_metrics(records: list[RecordDict], _weight_key: str) -> MetricRecord:
    return MetricRecord(_train_metrics_of([next(iter(r.metric_records.values())) for r in records]))


def _train_metrics_of(metrics: list) -> dict:
    """What the district learns of a round: how many boxes, learners and answers took
    part, and the largest epsilon any box has spent (each box's guarantee is its own)."""
    return {
        "boxes_trained": len(metrics),
        "weight": int(sum(m["num-examples"] for m in metrics)),  # learners, capped per box
        "answers": int(sum(m["answers"] for m in metrics)),
        "epsilon": float(max((m.get("epsilon", 0.0) for m in metrics), default=0.0)),
    }


def _evaluate_metrics(records: list[RecordDict], _weight_key: str) -> MetricRecord:
    pairs = []
    for record in records:
        m = next(iter(record.metric_records.values()))
        examples, auc = cast(float, m["num-examples"]), cast(float, m["auc"])  # scalars here
        pairs.append((int(examples), float(auc)))
    return MetricRecord(_weighted_auc(pairs))


def _legacy_evaluate_metrics(pairs: list) -> dict:
    return _weighted_auc([(n, float(m["auc"])) for n, m in pairs])


def _weighted_auc(pairs: list[tuple[int, float]]) -> dict:
    """AUC averaged over boxes, weighted by held-out answers; a box whose recent answers
    are all right (or all wrong) has no AUC and is left out."""
    scored = [(n, auc) for n, auc in pairs if not math.isnan(auc) and n > 0]
    total = sum(n for n, _ in scored)
    return {
        "auc": sum(n * auc for n, auc in scored) / total if total else float("nan"),
        "boxes_evaluated": len(pairs),
        "held_out_answers": int(sum(n for n, _ in pairs)),
    }


def _initial_weights(path: str) -> list[np.ndarray]:
    """The district's current model (an .npz a previous run wrote), or a fresh one."""
    if path:
        with np.load(path) as stored:
            return task.weights(task.with_weights([stored[k] for k in stored.files]))
    return task.weights(task.new_model())


def _write(output: Path, arrays: list[np.ndarray], summary: dict) -> None:
    if not str(output):
        return
    output.mkdir(parents=True, exist_ok=True)
    np.savez(output / "global.npz", *arrays)
    (output / "run.json").write_text(json.dumps(summary, indent=2, sort_keys=True))


app = make_app()
