"""The contract a knowledge-tracing model file meets: an ONNX step graph with these inputs
and outputs, within the opset the box runs. The model registry checks it on import with
the onnx package's full checker (`check`); the runtime checks it again on load through
onnxruntime alone (`check_session`), because importing onnx costs a web worker about 24 MB
and a second of start-up (ten under qemu); training's export writes to it."""

from __future__ import annotations

from pathlib import Path

INPUTS = ["skill_state", "learner_state", "item", "skill", "correct"]
OUTPUTS = ["p_correct", "next_skill_state", "next_learner_state"]
MAX_OPSET = 21


class KTModelError(ValueError):
    """The model file is not one the box can use, or it gave values it cannot trust."""


def check(path: Path) -> dict:
    """Refuse an ONNX file that is not a knowledge-tracing step graph; name what is wrong."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises several kinds for a damaged file
        raise KTModelError(f"{path.name} is not a valid ONNX model: {error}") from error
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > MAX_OPSET:
        raise KTModelError(
            f"{path.name} needs ONNX opset {opset}; this box runs up to {MAX_OPSET}."
        )
    _check_names(path, [i.name for i in model.graph.input], [o.name for o in model.graph.output])
    return {p.key: p.value for p in model.metadata_props}


def check_session(path: Path, session) -> dict:
    """The same contract for a model onnxruntime has loaded (`session`); its metadata.
    The opset needs no check here: onnxruntime refuses to load one it cannot run."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    _check_names(path, inputs, outputs)
    return dict(session.get_modelmeta().custom_metadata_map)


def _check_names(path: Path, inputs: list[str], outputs: list[str]) -> None:
    if inputs != INPUTS:
        raise KTModelError(
            f"{path.name} has inputs {inputs}; a knowledge-tracing model needs {INPUTS}."
        )
    if outputs != OUTPUTS:
        raise KTModelError(
            f"{path.name} has outputs {outputs}; a knowledge-tracing model needs {OUTPUTS}."
        )
