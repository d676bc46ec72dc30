"""Adam without torch's compiler: the optimiser a box trains with under its memory cap.

torch's optimisers import torch._dynamo (its compiler: ~110 MB resident and 800 modules)
the first time they add parameters or take a step, only to tell it to stay out of the
way. The knowledge-tracing model always trains eagerly, on the CPU, so `Adam` here runs
the same update without that import: the parameter-group method is marked as already
excluded from the compiler, and `step` calls torch's own Adam step body unwrapped.
Should a torch release change these wrappers, the compiler is imported as before: the
maths never changes (tests/models/test_kt_training_memory.py notices either way).
"""

from __future__ import annotations

import torch


def _mark_compiler_free(cls: type) -> None:
    """Mark methods wrapped by torch._disable_dynamo as already resolved, so calling them
    does not import the compiler (the wrapper caches its answer on this attribute)."""
    for klass in cls.__mro__:
        for method in vars(klass).values():
            code, inner = getattr(method, "__code__", None), getattr(method, "__wrapped__", None)
            if (
                code
                and inner
                and code.co_name == "inner"
                and code.co_filename.endswith("_compile.py")
            ):
                setattr(inner, "__dynamo_disable", inner)


class Adam(torch.optim.Adam):
    """torch.optim.Adam, stepped without importing torch's compiler."""

    def __init__(self, params, lr: float = 1e-3, **kwargs) -> None:
        _mark_compiler_free(torch.optim.Adam)
        super().__init__(params, lr=lr, **kwargs)

    def step(self, closure=None):
        body = getattr(torch.optim.Adam.step, "__wrapped__", None)
        if body is None or self.defaults["differentiable"]:
            return super().step(closure)
        with torch.no_grad():  # what torch's wrapper does, less the compiler's graph break
            return body(self, closure)
