"""Knowledge-tracing data: each learner's answers in order, and the item and skill features
the content-agnostic model reads instead of ids.

A data set is a folder of fold files, `<name>train<k>.csv`, `<name>valid<k>.csv` (optional)
and `<name>test<k>.csv` (as pyKT and AKT lay them out), each in one of two formats:

- *pid*: 4 lines a learner: a header (one or two numbers), problem ids, skill ids and
  responses (1 right, 0 wrong), comma-separated (assist2009_pid, assist2017_pid);
- *DKT*: 3 lines a learner: the number of answers, skill ids and responses (the plain
  format of Piech et al.'s DKT; assist2015, statics). With no problem ids, each skill is
  its own item.

An *answer* is one response to one problem. In the assist2009 files a problem tagged with
several skills is written as consecutive rows with the same problem and response; those
twins are folded into one Answer with several skills, so every answer is scored once,
from the history before it, never from its twin (shared/data/kt/README: the leakage trap).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PRIOR_WEIGHT = 10.0  # pseudo-answers pulling a rarely seen item towards its skills' rate
FORMATS = (
    "the pid format (4 lines a learner: a header, problem ids, skill ids, responses 0/1) "
    "or the DKT format (3 lines a learner: the number of answers, skill ids, responses 0/1), "
    "comma-separated"
)
# Where a fold's training file is one of these (by SHA-256), the card can name its source.
KNOWN_SOURCES = {
    "ASSISTments 2009-2010 skill-builder (Feng, Heffernan & Koedinger 2009), the "
    "preprocessed copy of arghosh/AKT data/assist2009_pid (commit 01b7e8d)": {
        "2b373459f4a55e305b7cc5aea3106398a1383c3356de5eaf8b249cd010ae01b7",
        "b007e4046a823ce0e885e23b2b4c9d9755829c9982805ce22fcfe18d9d6820eb",
        "57b66247d1bd8cec7577c100e484dde1c01739a1804b9d31eb0f9af7d213f643",
        "249f8a087b9cba051ad477be1b935960b463476db192e5fcb6642169f78d2336",
        "7220348e97eaf2efcd122cc53efbc55cf5676ca6144652135ee3c501aa86ae88",
    },
}
VALID_EVERY = 5  # with no validation file, every 5th training learner stops training early


class DataError(ValueError):
    """A data folder or file that cannot be read; the message says what to fix."""


@dataclass(frozen=True, slots=True)  # slots: a box holds hundreds of thousands of these
class Answer:
    problem: int
    skills: tuple[int, ...]
    correct: int  # 1 right, 0 wrong


@dataclass
class DataSet:
    """One fold of a data set: its learners by part and where they came from."""

    name: str  # from the file names: "assist2009_pid" for assist2009_pid_train1.csv
    fold: int
    format: str  # "pid" or "DKT"
    parts: dict[str, list[list[Answer]]]
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> digest
    valid_from_train: bool = False  # no validation file: held out from training learners

    def source(self) -> str:
        """What the data is, for the model card: its known source, or its files."""
        train = self.sha256[min(n for n in self.sha256 if "train" in n)]
        known = [text for text, digests in KNOWN_SOURCES.items() if train in digests]
        what = known[0] if known else f"the data set {self.name!r} (source not recorded)"
        return f"{what}, {self.format} format, fold {self.fold}"


def read_answers(path: Path) -> list[list[Answer]]:
    """Every learner's answers from one fold file, in the pid or the DKT format."""
    return read_file(path)[1]


def read_file(path: Path) -> tuple[str, list[list[Answer]]]:
    """The file's format ("pid" or "DKT") and every learner's answers in it."""
    lines = _number_lines(path)
    per = _lines_a_learner(lines, path)
    learners = []
    for start in range(0, len(lines), per):
        if per == 4:
            problems, skills, responses = lines[start + 1 : start + 4]
        else:  # DKT: no problem ids, so each skill is its own item
            skills, responses = lines[start + 1 : start + 3]
            problems = skills
        learners.append(fold_twins(problems, skills, responses))
    return ("pid" if per == 4 else "DKT"), learners


def _number_lines(path: Path) -> list[list[int]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be read ({error}); expected {FORMATS}.") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            lines.append([int(v) for v in line.split(",") if v.strip()])
        except ValueError:
            raise DataError(
                f"{path}, line {number}, is not comma-separated whole numbers: expected {FORMATS}."
            ) from None
    return lines


def _lines_a_learner(lines: list[list[int]], path: Path) -> int:
    """4 for the pid format, 3 for DKT; anything else is refused, naming both."""
    for per in (4, 3):
        if (
            lines
            and len(lines) % per == 0
            and all(_one_learner(lines[start : start + per]) for start in range(0, len(lines), per))
        ):
            return per
    raise DataError(f"{path} is in neither format this reads: expected {FORMATS}.")


def _one_learner(block: list[list[int]]) -> bool:
    header, *rows = block
    if not 1 <= len(header) <= 2 or len({len(row) for row in rows}) != 1 or not rows[0]:
        return False
    if len(rows) == 2 and header[0] != len(rows[0]):  # DKT: the header counts the answers
        return False
    return set(rows[-1]) <= {0, 1}


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


def fold(number: int, root: Path) -> dict[str, list[list[Answer]]]:
    """One of the learner-level folds: train, valid and test share no learner."""
    return load(root, number).parts


def load(root: Path, number: int = 1) -> DataSet:
    """Fold `number` of the data set in folder `root`, refused with a message saying what
    is missing or wrong before anything is trained or written."""
    if not root.is_dir():
        raise DataError(f"There is no data folder {root}.")
    files = {part: _fold_file(root, part, number) for part in ("train", "valid", "test")}
    train = files["train"]
    if train is None or files["test"] is None:
        part = "train" if train is None else "test"
        raise DataError(
            f"{root} has no {part} file for fold {number}: expected files named "
            f"<name>train{number}.csv, <name>valid{number}.csv (optional) and "
            f"<name>test{number}.csv, in {FORMATS}."
        )
    read = {part: read_file(path) for part, path in files.items() if path}
    formats = {found for found, _ in read.values()}
    if len(formats) > 1:
        raise DataError(f"{root} mixes the pid and DKT formats in fold {number}.")
    parts = {part: learners for part, (_, learners) in read.items()}
    if files["valid"] is None:
        learners = parts["train"]
        parts["train"] = [a for i, a in enumerate(learners) if i % VALID_EVERY]
        parts["valid"] = learners[::VALID_EVERY]
    return DataSet(
        name=train.name.removesuffix(f"train{number}.csv").rstrip("_") or root.name,
        fold=number,
        format=formats.pop(),
        parts={part: parts[part] for part in ("train", "valid", "test")},
        sha256={p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files.values() if p},
        valid_from_train=files["valid"] is None,
    )


def _fold_file(root: Path, part: str, number: int) -> Path | None:
    found = sorted(root.glob(f"*{part}{number}.csv"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{root} has more than one {part} file for fold {number}: {names}.")
    return found[0] if found else None


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
    item_n: Counter[int] = Counter()
    item_right: Counter[int] = Counter()
    skill_n: Counter[int] = Counter()
    skill_right: Counter[int] = Counter()
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
