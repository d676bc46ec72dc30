"""Knowledge-tracing data: each learner's answers in order, and the item and skill features
the content-agnostic model reads instead of ids.

An *answer* is one response to one problem. In the assist2009 files a problem tagged with
several skills is written as consecutive rows with the same problem and response; those
twins are folded into one Answer with several skills, so every answer is scored once,
from the history before it, never from its twin (shared/data/kt/README: the leakage trap).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSIST2009 = REPO.parent / "shared" / "data" / "kt" / "assist2009"
PRIOR_WEIGHT = 10.0  # pseudo-answers pulling a rarely seen item towards its skills' rate


@dataclass(frozen=True, slots=True)  # slots: a box holds hundreds of thousands of these
class Answer:
    problem: int
    skills: tuple[int, ...]
    correct: int  # 1 right, 0 wrong


def read_answers(path: Path) -> list[list[Answer]]:
    """Every learner's answers from one assist2009 fold file (4 lines a learner)."""
    lines = path.read_text().split("\n")
    learners = []
    for start in range(0, len(lines) - 3, 4):
        problems, skills, responses = (
            [int(v) for v in lines[start + k].split(",") if v] for k in (1, 2, 3)
        )
        learners.append(fold_twins(problems, skills, responses))
    return learners


def fold_twins(problems: list[int], skills: list[int], responses: list[int]) -> list[Answer]:
    """Rows to answers: consecutive rows of one problem with one response are one answer."""
    answers: list[Answer] = []
    for problem, skill, correct in zip(problems, skills, responses, strict=True):
        last = answers[-1] if answers else None
        if (
            last
            and last.problem == problem
            and last.correct == correct
            and skill not in last.skills
        ):
            answers[-1] = Answer(problem, (*last.skills, skill), correct)
        else:
            answers.append(Answer(problem, (skill,), correct))
    return answers


def fold(number: int, root: Path = ASSIST2009) -> dict[str, list[list[Answer]]]:
    """One of the five learner-level folds: train, valid and test share no learner."""
    return {
        part: read_answers(root / f"assist2009_pid_{part}{number}.csv")
        for part in ("train", "valid", "test")
    }


@dataclass
class Difficulty:
    """How hard items and skills are, as log-odds of a right answer, learned from answers.

    These, not item or skill ids, are what the model sees, so its weights carry over to
    any content pack: a box computes the same figures from its own learners' answers.
    """

    item: dict[int, float]
    skill: dict[int, float]
    overall: float

    def of_skill(self, skill: int) -> float:
        return self.skill.get(skill, self.overall)

    def of_item(self, problem: int, skills: tuple[int, ...]) -> float:
        found = self.item.get(problem)
        if found is not None:
            return found
        return sum(self.of_skill(s) for s in skills) / len(skills)


def difficulty(learners: list[list[Answer]]) -> Difficulty:
    """Smoothed log-odds of success per item and per skill from (training) answers."""
    item_n, item_right, skill_n, skill_right = Counter(), Counter(), Counter(), Counter()
    item_skills: dict[int, tuple[int, ...]] = {}
    for answers in learners:
        for a in answers:
            item_n[a.problem] += 1
            item_right[a.problem] += a.correct
            item_skills[a.problem] = a.skills
            for s in a.skills:
                skill_n[s] += 1
                skill_right[s] += a.correct
    total = sum(item_n.values()) or 1
    overall_rate = (sum(item_right.values()) + 1) / (total + 2)
    skill_rate = {s: smoothed(skill_right[s], skill_n[s], overall_rate) for s in skill_n}
    item_logit = {}
    for problem, n in item_n.items():
        prior = sum(skill_rate[s] for s in item_skills[problem]) / len(item_skills[problem])
        item_logit[problem] = logit(smoothed(item_right[problem], n, prior))
    return Difficulty(
        item=item_logit,
        skill={s: logit(r) for s, r in skill_rate.items()},
        overall=logit(overall_rate),
    )


def smoothed(right: int, answers: int, prior: float) -> float:
    """The share of right answers, pulled towards `prior` while there are few answers."""
    return (right + PRIOR_WEIGHT * prior) / (answers + PRIOR_WEIGHT)


def logit(rate: float) -> float:
    rate = min(max(rate, 1e-3), 1 - 1e-3)
    return math.log(rate / (1 - rate))


def rate_of(log_odds: float) -> float:
    return 1 / (1 + math.exp(-log_odds))
