"""Model store, tutor runtime and knowledge tracing.

Importing the package switches off the telemetry of the libraries behind it (onnxruntime
first among them) before any module here can import them: see models/offline.py.
"""

from models import offline

offline.apply()
