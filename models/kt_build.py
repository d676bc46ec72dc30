"""Build a knowledge-tracing model from one assist2009 fold: train, export, quantise, card.

    .venv/bin/python -m models.kt_build                 # the default model the box ships
    .venv/bin/python -m models.kt_build --fold 3 --out /tmp/kt3

Trains on the fold's training learners (early stopping on its validation learners),
scores its test learners (no learner in two parts), and writes beside each other:
kt.int8.onnx (what the box runs) and kt.int8.card.json (the float32 model's figures too).
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from . import kt_data, kt_export, kt_train
from .kt_runtime import KTRuntime, step_by_step

SHIPPED = Path(__file__).resolve().parent / "shipped"
SOURCE = (
    "ASSISTments 2009-2010 skill-builder (Feng, Heffernan & Koedinger 2009), the "
    "preprocessed copy of arghosh/AKT data/assist2009_pid (commit 01b7e8d), fold {fold}"
)


def build(fold: int, out: Path, epochs: int = 10, log=print) -> dict:
    """Train on one fold and write the models and card to `out`; return the card."""
    data = kt_data.fold(fold)
    diff = kt_data.difficulty(data["train"])
    trained = kt_train.train(data["train"], data["valid"], diff, epochs=epochs, log=log)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {
        "title": f"Schoolbox knowledge tracing (content-agnostic GRU), assist2009 fold {fold}",
        "architecture": "per-skill + per-learner GRU over item/skill difficulty",
        "quantisation": "float32",
        "licence": "model: Apache-2.0; trained on ASSISTments data (see card)",
        "overall_logit": f"{diff.overall:.6f}",
    }
    float_path = kt_export.export(trained.model, out / "kt.onnx", metadata)
    int8_path = kt_export.quantise(float_path, out / "kt.int8.onnx")
    float_metrics = kt_train.evaluate(trained.model, data["test"], diff)
    int8_predicted, labels = step_by_step(KTRuntime(int8_path), data["test"], diff)
    card = {
        "model": metadata["title"],
        "format": f"ONNX step graph, opset {kt_export.OPSET}",
        "inputs": "states before an answer, item and skill difficulty (log-odds), correct",
        "data": SOURCE.format(fold=fold),
        "split": (
            f"learner-level fold {fold}: {len(data['train'])} learners train, "
            f"{len(data['valid'])} validation (early stopping), {len(data['test'])} test"
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
        "limits": "trained on one US maths platform's learners; difficulties on a box "
        "come from its own answers, so estimates are rough until items have been answered",
    }
    kt_export.write_card(int8_path, card)
    float_path.unlink()  # the box runs the int8 file; the card keeps the float's figures
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args()
    started = time.perf_counter()
    card = build(args.fold, args.out, args.epochs)
    print(f"test AUC float32 {card['metrics_test_float32']['auc']:.4f}, "
          f"int8 {card['metrics_test_int8']['auc']:.4f}; {card['size_bytes']['int8']} bytes; "
          f"{time.perf_counter() - started:.0f} s; written to {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
