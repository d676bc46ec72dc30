"""Telemetry off: the switches of every library the box uses that phones home unless told.

Set in one place, before any of them is imported: `models` (onnxruntime, llama.cpp, gguf,
torch) and `federated` (Flower, Opacus) apply them when they are imported, and every
process the box starts inherits them. Forced, not defaulted: an operator's shell must not
switch them back on by accident. tests/test_no_phoning_home.py audits every connect().
"""

from __future__ import annotations

import os

SWITCHES = {
    # onnxruntime 1.32 resolves mobile.events.data.microsoft.com unless this is set.
    "ORT_DISABLE_TELEMETRY": "1",
    # Flower's usage telemetry, and its update check (a request to flower.ai).
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # huggingface_hub (llama-cpp-python's from_pretrained, gguf tooling): no hub, no
    # telemetry; the box loads model files it already holds.
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # The cross-tool convention some libraries honour (consoledonottrack.com).
    "DO_NOT_TRACK": "1",
}


def apply() -> None:
    """Switch telemetry off in this process and in every process it starts."""
    os.environ.update(SWITCHES)
