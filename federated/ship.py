"""From a finished run to the classroom: export the global model through the
knowledge-tracing exporter (int8 ONNX + model card), sign it with the district's key and
queue it on the sync update channel, which carries it to every box (HTTP or USB). Each
box then activates it only if it is not worse on its own recent answers (sync/updates.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx

from federated import task
from models.knowledge_tracing.training import build as kt_build
from models.knowledge_tracing.training import export as kt_export
from sync import updates
from sync.hub import home as hub_store

MODEL_NAME = "kt-federated"  # each run's model is kt-federated-<run>


class ShipError(ValueError):
    """A run whose model must not go to the boxes; the message says why."""


def latest_weights(hub_home: Path) -> Path | None:
    """The last shipped run's weights, where the next run starts from."""
    path = hub_store.federation_folder(hub_home) / "models" / "latest.npz"
    return path if path.exists() else None


def shipped_weights() -> Path | None:
    """The float32 weights of the knowledge-tracing model every box ships with (written
    by models/knowledge_tracing/training/build.py beside its int8 ONNX), where a district's
    first run starts."""
    path = kt_build.SHIPPED / "kt.float.npz"
    return path if path.exists() else None


def starting_weights(hub_home: Path, initial: Path | None) -> Path | None:
    """Where a run starts: the weights asked for, else the last shipped run's, else the
    shipped model's (None: a fresh model, which boxes will not take over their own)."""
    return initial or latest_weights(hub_home) or shipped_weights()


def nothing_trained(summary: dict) -> bool:
    """True when no box trained in any round of the run (outside every box's training
    window, no consent, or no box reachable): the run did nothing."""
    return not any(h.get("boxes_trained", 0) and not h.get("skipped")
                   for h in summary.get("history", []))  # fmt: skip


def ship(hub_home: Path, run_dir: Path) -> Path:
    """Export, card, sign; the signed update's folder. Only a complete run is shipped:
    every round averaged enough boxes, and the final model scored no worse than the start."""
    summary = json.loads((run_dir / "run.json").read_text())
    if summary.get("complete") != "yes":
        raise ShipError(f"This run's model is not shipped: {summary.get('complete')}.")
    with np.load(run_dir / "global.npz") as stored:
        model = task.with_weights([stored[k] for k in stored.files])
    version = run_dir.name
    name = f"{MODEL_NAME}-{version}"
    with tempfile.TemporaryDirectory() as scratch:
        float_path = kt_export.export(model, Path(scratch) / "kt.onnx", _metadata(version))
        int8_path = kt_export.quantise(float_path, run_dir / f"{name}.int8.onnx")
    kt_export.write_card(int8_path, card(summary, int8_path))
    folder = hub_store.updates_folder(hub_home) / f"model-{name}"
    updates.sign(hub_store.district_keys(hub_home), int8_path, "model", name, version, folder,
                 "knowledge-tracing")  # fmt: skip
    latest = hub_store.federation_folder(hub_home) / "models" / "latest.npz"
    latest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "global.npz", latest)
    return folder


def _metadata(version: str) -> dict:
    shipped = onnx.load(str(kt_build.SHIPPED / "kt.int8.onnx"))
    overall = {p.key: p.value for p in shipped.metadata_props}.get("overall_logit", "0.0")
    return {
        "title": f"Schoolbox knowledge tracing, federated run {version}",
        "architecture": "per-skill + per-learner GRU over item/skill difficulty",
        "quantisation": "float32",
        "licence": "model: Apache-2.0; trained by the district's schools (see card)",
        "overall_logit": overall,
    }


def card(summary: dict, int8_path: Path) -> dict:
    """The model card: where it was trained, how, with what privacy, and how it scored."""
    final, settings = summary.get("final", {}), summary.get("settings", {})
    epsilon = summary.get("epsilon", 0.0)
    return {
        "model": f"Schoolbox knowledge tracing, federated run {int8_path.parent.name}",
        "format": f"ONNX step graph, opset {kt_export.OPSET}",
        "data": (
            f"{final.get('boxes_trained', '?')} school boxes' own answers, trained on each "
            "box (Flower FedAvg); no answer, learner id or name left a school"
        ),
        "rounds": summary.get("rounds"),
        "local_epochs": settings.get("local-epochs"),
        "secure_aggregation": summary.get("secure_aggregation", False),
        "privacy": (
            {
                "mechanism": "DP-SGD over learners (Opacus), per box",
                "epsilon": round(epsilon, 3),
                "delta": settings.get("dp-delta"),
                "epsilon_target": settings.get("dp-epsilon"),
            }
            if settings.get("dp-epsilon")
            else {"mechanism": "none (no differential privacy)"}
        ),  # fmt: skip
        "metrics": {"auc": final.get("auc")},  # what the box's monitor compares live AUC to
        "metrics_federated_evaluation": {
            "scoring": "each box's held-out most recent 20% of answers, AUC weighted by answers",
            "initial_auc": summary.get("initial", {}).get("auc"),
            "final_auc": final.get("auc"),
            "boxes_evaluated": final.get("boxes_evaluated"),
            "held_out_answers": final.get("held_out_answers"),
        },
        "history": summary.get("history", []),
        "size_bytes": {"int8": int8_path.stat().st_size},
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "activation": "each box activates it only if, on its own recent answers, its AUC "
        "is not more than 0.005 below the active model's",
    }
