"""Knowledge tracing on the box: the exported step graph through onnxruntime, no torch.

A learner's state is one vector per skill they have practised plus one for the learner;
an answer is one step (`update`), and predicting candidate items is one batched call
(`predict`). A model that gives NaN or values outside 0..1 raises KTModelError, so the
caller falls back to its rule instead of trusting it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.knowledge_tracing.contract import (
    INPUTS,
    OUTPUTS,
    KTModelError,
    check_session,
)
from models.knowledge_tracing.data import Difficulty
from models.registry import installed as store


@dataclass
class Step:
    p_correct: float  # the chance of a right answer predicted before it (mean of skills)
    per_skill: np.ndarray  # [k]
    skill_states: np.ndarray  # [k, H] after the answer
    learner_state: np.ndarray  # [G] after the answer


class KTRuntime:
    def __init__(self, path: Path, threads: int = 1, name: str = ""):
        import onnxruntime as ort

        self.name = name or path.stem
        self.failed = False  # it gave values the box cannot trust: use the rule instead
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one answer is tiny: threads only add waits
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises several kinds for a damaged file
            raise KTModelError(f"{path.name} is not a valid ONNX model: {error}") from error
        self.metadata = check_session(path, self._session)
        # The training data's overall log-odds of a right answer: the prior for a box
        # whose items have no answers yet.
        self.overall_logit = float(self.metadata.get("overall_logit", "0.0"))
        shapes = {i.name: i.shape for i in self._session.get_inputs()}
        self.skill_hidden = int(shapes["skill_state"][1])
        self.learner_hidden = int(shapes["learner_state"][1])

    def new_skill_state(self) -> np.ndarray:
        return np.zeros(self.skill_hidden, dtype=np.float32)

    def new_learner_state(self) -> np.ndarray:
        return np.zeros(self.learner_hidden, dtype=np.float32)

    def update(
        self,
        skill_states: np.ndarray,
        learner_state: np.ndarray,
        item: float,
        skills: list[float],
        correct: int,
    ) -> Step:
        """One answer to an item with k skills: the prediction it had, and the new states."""
        k = len(skills)
        p, next_skill, next_learner = self._run(
            skill_states.reshape(k, self.skill_hidden),
            np.repeat(learner_state.reshape(1, -1), k, axis=0),
            np.full((k, 1), item, dtype=np.float32),
            np.array(skills, dtype=np.float32).reshape(k, 1),
            np.full((k, 1), float(correct), dtype=np.float32),
        )
        per_skill = p[:, 0]
        # Every row steps the learner state with the same input: they agree; take one.
        return Step(float(per_skill.mean()), per_skill, next_skill, next_learner[0])

    def step_rows(
        self, skill_states: np.ndarray, learner_states: np.ndarray, items: np.ndarray,
        skills: np.ndarray, correct: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Many answers' rows in one call (one row per answer x skill; rows never read each
        other): the chance each row had, and each row's next skill and learner states."""
        n = len(items)
        p, next_skill, next_learner = self._run(
            skill_states.reshape(n, self.skill_hidden),
            learner_states.reshape(n, self.learner_hidden),
            np.asarray(items, dtype=np.float32).reshape(n, 1),
            np.asarray(skills, dtype=np.float32).reshape(n, 1),
            np.asarray(correct, dtype=np.float32).reshape(n, 1),
        )
        return p[:, 0], next_skill, next_learner

    def predict(
        self, skill_states: np.ndarray, learner_states: np.ndarray, items: np.ndarray,
        skills: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Chances of a right answer for n (state, item, skill) rows, in one call."""
        n = len(items)
        p, _, _ = self._run(
            skill_states.reshape(n, self.skill_hidden).astype(np.float32),
            learner_states.reshape(n, self.learner_hidden).astype(np.float32),
            np.asarray(items, dtype=np.float32).reshape(n, 1),
            np.asarray(skills, dtype=np.float32).reshape(n, 1),
            np.zeros((n, 1), dtype=np.float32),
        )
        return p[:, 0]

    def _run(self, *arrays: np.ndarray):
        p, next_skill, next_learner = self._session.run(
            OUTPUTS, dict(zip(INPUTS, [a.astype(np.float32) for a in arrays], strict=True))
        )
        if not (np.isfinite(p).all() and np.isfinite(next_skill).all()):
            raise KTModelError("the knowledge-tracing model gave a value that is not a number")
        if (p < 0).any() or (p > 1).any():
            raise KTModelError("the knowledge-tracing model gave a chance outside 0..1")
        return p, next_skill, next_learner


_loaded: dict[str, tuple[int, KTRuntime | None]] = {}
_checked: dict[str, float] = {}  # when each home's store was last looked at
RECHECK_S = 1.0
_lock = threading.Lock()
log = logging.getLogger("schoolbox.knowledge")


def active(home: Path, fresh: bool = False) -> KTRuntime | None:
    """The store's active knowledge-tracing model, loaded once per change; None when there
    is none or it cannot be loaded (logged once, and the box uses its rule instead).
    Without `fresh`, a change is noticed within RECHECK_S."""
    key = str(home)
    cached = _loaded.get(key)
    # A web request asks every time: look at the store at most once a second.
    if cached and not fresh and time.monotonic() - _checked.get(key, 0.0) < RECHECK_S:
        runtime = cached[1]
        return None if runtime is None or runtime.failed else runtime
    stamp = store.active_stamp(home)
    with _lock:
        _checked[key] = time.monotonic()
        cached = _loaded.get(key)
        if cached and cached[0] == stamp:
            runtime = cached[1]
            return None if runtime is None or runtime.failed else runtime
        runtime = None
        try:
            manifest = store.active(home, "knowledge-tracing")
            if manifest is not None:
                runtime = KTRuntime(store.file_path(home, manifest), name=manifest.name)
        except (KTModelError, OSError, ValueError) as error:
            log.error("knowledge-tracing model unusable (%s); using the rule", type(error).__name__)
        _loaded[str(home)] = (stamp, runtime)
        return runtime


def unusable(runtime: KTRuntime, error: Exception) -> None:
    """Stop using a model that gave unusable values, until another model is activated;
    logged once, not once per answer."""
    with _lock:
        if runtime.failed:
            return
        runtime.failed = True
    log.error(
        "knowledge-tracing model %s gave unusable values (%s); using the rule until "
        "another model is activated",
        runtime.name,
        error,
    )


def step_by_step(
    runtime: KTRuntime, learners, diff: Difficulty, timings: list | None = None
) -> tuple:
    """Each answer's prediction made as the box makes it (one step per answer), and labels.
    With `timings`, each step's onnxruntime call time (ms) is appended to it."""
    predicted, labels = [], []
    for answers in learners:
        skill_states: dict[int, np.ndarray] = {}
        learner_state = runtime.new_learner_state()
        for a in answers:
            states = np.stack([skill_states.get(s, runtime.new_skill_state()) for s in a.skills])
            item, skills = diff.of_item(a.problem, a.skills), [diff.of_skill(s) for s in a.skills]
            started = time.perf_counter()
            step = runtime.update(states, learner_state, item, skills, a.correct)
            if timings is not None:
                timings.append((time.perf_counter() - started) * 1000)
            predicted.append(step.p_correct)
            labels.append(a.correct)
            skill_states.update(zip(a.skills, step.skill_states, strict=True))
            learner_state = step.learner_state
    return np.array(predicted), np.array(labels)
