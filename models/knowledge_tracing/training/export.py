"""Export the trained knowledge-tracing model to ONNX as one *step*, quantise it to int8,
and write its model card beside it (PyTorch: the `train` extra only).

The exported graph takes the states before an answer and gives, for each of the answer's
skills (one row each), the chance of a right answer and the states after it:

    inputs   skill_state [n, H], learner_state [n, G], item [n, 1], skill [n, 1], correct [n, 1]
    outputs  p_correct [n, 1], next_skill_state [n, H], next_learner_state [n, G]

p_correct depends only on the states and difficulties, never on `correct`, so the same
graph predicts candidates before an answer (kt_runtime.KTRuntime.predict).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.knowledge_tracing.contract import INPUTS, OUTPUTS
from models.knowledge_tracing.training.model import KTModel

OPSET = 18


class StepModel(nn.Module):
    """The trained GRUs as single-step cells (same weights), and the head."""

    def __init__(self, model: KTModel):
        super().__init__()
        shape = model.shape
        self.skill_cell = _cell(model.skill_gru, 3, shape.skill_hidden)
        self.learner_cell = _cell(model.learner_gru, 2, shape.learner_hidden)
        self.head = model.head

    def forward(self, skill_state, learner_state, item, skill, correct):
        logit = self.head(torch.cat([skill_state, learner_state, item, skill], dim=1))
        next_skill = self.skill_cell(torch.cat([correct, item, skill], dim=1), skill_state)
        next_learner = self.learner_cell(torch.cat([correct, item], dim=1), learner_state)
        return torch.sigmoid(logit), next_skill, next_learner


def _cell(gru: nn.GRU, inputs: int, hidden: int) -> nn.GRUCell:
    cell = nn.GRUCell(inputs, hidden)
    cell.weight_ih.data.copy_(gru.get_parameter("weight_ih_l0").data)
    cell.weight_hh.data.copy_(gru.get_parameter("weight_hh_l0").data)
    cell.bias_ih.data.copy_(gru.get_parameter("bias_ih_l0").data)
    cell.bias_hh.data.copy_(gru.get_parameter("bias_hh_l0").data)
    return cell


def export(model: KTModel, path: Path, metadata: dict) -> Path:
    """Write the float32 step graph; `metadata` (the card's essentials) goes inside it."""
    step = StepModel(model).eval()
    shape = model.shape
    n = 2
    example = (
        torch.zeros(n, shape.skill_hidden),
        torch.zeros(n, shape.learner_hidden),
        torch.zeros(n, 1),
        torch.zeros(n, 1),
        torch.zeros(n, 1),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = torch.export.Dim("rows", min=1)  # one row per skill of an answer, or per candidate
    torch.onnx.export(
        step,
        example,
        str(path),
        input_names=INPUTS,
        output_names=OUTPUTS,
        dynamic_shapes=({0: rows},) * len(INPUTS),
        opset_version=OPSET,
        dynamo=True,
        external_data=False,  # one self-contained file for the model store
    )
    set_metadata(path, metadata)
    return path


def quantise(float_path: Path, int8_path: Path) -> Path:
    """int8 weights for the matrix products (onnxruntime's dynamic quantisation)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8)
    metadata = {p.key: p.value for p in onnx.load(str(float_path)).metadata_props}
    set_metadata(int8_path, {**metadata, "quantisation": "int8 (dynamic, weights)"})
    return int8_path


def set_metadata(path: Path, metadata: dict) -> None:
    """Key-value metadata inside the ONNX file (title, licence, quantisation...)."""
    import onnx

    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(graph, str(path))


def save_weights(model: KTModel, path: Path) -> Path:
    """The float32 weights as `np.savez` arrays in the model's parameter order: the format
    `schoolbox federated run --initial` reads (federated/task.py), so a district's first
    run starts from the shipped model instead of random weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [t.detach().cpu().numpy().astype(np.float32) for t in model.state_dict().values()]
    with path.open("wb") as out:  # np.savez would add ".npz" to a name without it
        np.savez(out, *arrays)
    return path


def write_card(path: Path, card: dict) -> Path:
    """The model card beside the model: data, split, metrics, size, how it was made."""
    card_path = path.with_suffix(".card.json")
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card_path
