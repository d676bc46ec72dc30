"""Training the knowledge-tracing model (torch): the model, optimiser, export and baselines.

Only the train and federated extras install torch; a box never imports this package.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - the box's own venv
    raise ImportError(
        "Training the knowledge-tracing model needs torch: install the 'train' extra "
        "(pip install -e '.[train]')."
    ) from error
