"""Federated training of the knowledge-tracing model with Flower (docs/federated.md).

The box never phones home, and neither does the district: Flower's usage telemetry and
its update check (a request to flower.ai every few hours), onnxruntime's and the rest
(models/offline.py) are off in every process that imports this package and, through
district.flower_env, in every Flower process we start.
"""

from models import offline

offline.apply()
