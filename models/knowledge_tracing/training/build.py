"""Build a knowledge-tracing model from one data set fold: train, export, quantise, card.

    # the default model the box ships, then a fold or another data set elsewhere:
    .venv/bin/python -m models.knowledge_tracing.training.build
    .venv/bin/python -m models.knowledge_tracing.training.build --fold 3 --out /tmp/kt3
    .venv/bin/python -m models.knowledge_tracing.training.build \
        --data ../shared/data/kt/statics --out /tmp/statics

Trains on the fold's training learners (early stopping on its validation learners),
scores its test learners (no learner in two parts), and writes beside each other:
kt.int8.onnx (what the box runs), kt.int8.card.json (the float32 model's figures too)
and kt.float.npz (the float32 weights `schoolbox federated run` starts from). `--data`
takes any folder of fold files in the pid or DKT format (models/knowledge_tracing/data.py); the card
and the ONNX metadata name the data the model was trained on, and the files' SHA-256.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing.runtime import KTRuntime, step_by_step
from models.knowledge_tracing.training import datasets
from models.knowledge_tracing.training import export as kt_export
from models.knowledge_tracing.training import model as kt_train

SHIPPED = Path(__file__).resolve().parents[2] / "shipped"  # models/shipped
WEIGHTS = "kt.float.npz"  # beside kt.int8.onnx: the same model's float32 weights


def build(
    fold: int,
    out: Path,
    epochs: int = 10,
    log=print,
    data_dir: Path = datasets.ASSIST2009,
) -> dict:
    """Train on one fold of the data set in `data_dir` and write the models, weights and
    card to `out`; return the card. A data folder that cannot be read raises
    kt_data.DataError before anything is written."""
    dataset = kt_data.load(data_dir, fold)
    data = dataset.parts
    diff = kt_data.difficulty(data["train"])
    trained = kt_train.train(data["train"], data["valid"], diff, epochs=epochs, log=log)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {
        "title": f"Schoolbox knowledge tracing (content-agnostic GRU), {dataset.name} fold {fold}",
        "architecture": "per-skill + per-learner GRU over item/skill difficulty",
        "quantisation": "float32",
        "licence": "model: Apache-2.0; trained on the data named in `data` (see card)",
        "overall_logit": f"{diff.overall:.6f}",
        "data": dataset.source(),
        "data_sha256": dataset.sha256,
    }
    float_path = kt_export.export(trained.model, out / "kt.onnx", metadata)
    int8_path = kt_export.quantise(float_path, out / "kt.int8.onnx")
    float_metrics = kt_train.evaluate(trained.model, data["test"], diff)
    int8_predicted, labels = step_by_step(KTRuntime(int8_path), data["test"], diff)
    card = {
        "model": metadata["title"],
        "format": f"ONNX step graph, opset {kt_export.OPSET}",
        "inputs": "states before an answer, item and skill difficulty (log-odds), correct",
        "data": dataset.source(),
        "data_sha256": dataset.sha256,
        "split": (
            f"learner-level fold {fold}: {len(data['train'])} learners train, "
            f"{len(data['valid'])} validation (early stopping"
            f"{', every 5th training learner' if dataset.valid_from_train else ''}), "
            f"{len(data['test'])} test"
        ),
        "scoring": "each answer once, from the history before it; multi-skill answers "
        "are one answer (mean of their skills' predictions)",
        "metrics_test_float32": float_metrics,
        "metrics_test_int8": kt_train.metrics(int8_predicted, labels),
        "epochs": trained.epochs,
        "training_seconds": round(trained.seconds, 1),
        "size_bytes": {"float32": float_path.stat().st_size, "int8": int8_path.stat().st_size},
        "shape": vars(trained.model.shape),
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "made_on": platform.platform(),
        "weights": f"{WEIGHTS}: these float32 weights, for federated runs to start from",
        "limits": f"trained on the learners of one data set ({dataset.name}); difficulties "
        "on a box come from its own answers, so estimates are rough until items have been "
        "answered",
    }
    kt_export.write_card(int8_path, card)
    kt_export.save_weights(trained.model, out / WEIGHTS)
    float_path.unlink()  # the box runs the int8 file; the card keeps the float's figures
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=datasets.ASSIST2009, help="fold files, pid or DKT format"
    )
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        card = build(args.fold, args.out, args.epochs, data_dir=args.data)
    except kt_data.DataError as error:
        sys.exit(f"kt_build: {error}")
    print(f"test AUC float32 {card['metrics_test_float32']['auc']:.4f}, "
          f"int8 {card['metrics_test_int8']['auc']:.4f}; {card['size_bytes']['int8']} bytes; "
          f"{time.perf_counter() - started:.0f} s; written to {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
