"""Knowledge tracing: the data format, the ONNX runtime the box runs, and the model gate.

Training (torch) is in `training/`, imported only where the train or federated extra is
installed; the box never imports it."""
