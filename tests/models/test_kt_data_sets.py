"""Knowledge tracing beyond assist2009: `kt_build --data DIR` and the benchmark read any
data set in the pid or the plain 3-line DKT format, name it on the card and in the ONNX
metadata, and refuse any other format with a message naming the expected ones."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing.training import build as kt_build

pytestmark = pytest.mark.slow  # trains and exports a model per data set

REPO = Path(__file__).resolve().parents[2]


def learners(count: int, seed: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Simulated learners who learn: (problems, skills, responses), 12-30 answers each."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ability, practised = rng.gauss(0, 1), {}
        problems, skills, responses = [], [], []
        for _ in range(rng.randint(12, 30)):
            skill = rng.randint(1, 6)
            problem = skill * 100 + rng.randint(0, 9)
            practised[skill] = practised.get(skill, 0) + 1
            chance = 1 / (1 + 2.718 ** -(ability + 0.3 * practised[skill] - skill / 3))
            problems.append(problem)
            skills.append(skill)
            responses.append(int(rng.random() < chance))
        out.append((problems, skills, responses))
    return out


def write(path: Path, rows, form: str) -> Path:
    lines = []
    for n, (problems, skills, responses) in enumerate(rows):
        if form == "pid":
            lines += [f"{n},{len(skills)}", ",".join(map(str, problems))]
        else:
            lines.append(str(len(skills)))
        lines += [",".join(map(str, skills)), ",".join(map(str, responses))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def dkt_dir(tmp_path) -> Path:
    """A data set in the plain DKT format, with no validation file (like many DKT sets)."""
    folder = tmp_path / "tiny_dkt"
    folder.mkdir()
    write(folder / "tiny_train1.csv", learners(150, 1), "dkt")
    write(folder / "tiny_test1.csv", learners(40, 2), "dkt")
    return folder


def test_the_dkt_format_reads_each_skill_as_its_own_item_and_holds_out_validation(dkt_dir):
    dataset = kt_data.load(dkt_dir, 1)
    assert (dataset.format, dataset.name, dataset.valid_from_train) == ("DKT", "tiny", True)
    assert (len(dataset.parts["train"]), len(dataset.parts["valid"])) == (120, 30)
    first = learners(150, 1)[0]
    assert dataset.parts["valid"][0][0] == kt_data.Answer(first[1][0], (first[1][0],), first[2][0])
    assert (
        dataset.sha256["tiny_train1.csv"]
        == hashlib.sha256((dkt_dir / "tiny_train1.csv").read_bytes()).hexdigest()
    )
    assert "'tiny' (source not recorded), DKT format, fold 1" in dataset.source()


def test_the_pid_format_keeps_problem_ids_and_folds_multi_skill_twins(tmp_path):
    path = tmp_path / "x_pid_train1.csv"
    path.write_text("7,42\n5,5,9\n1,2,3\n1,1,0\n")
    assert kt_data.read_file(path) == (
        "pid",
        [[kt_data.Answer(5, (1, 2), 1), kt_data.Answer(9, (3,), 0)]],
    )


@pytest.mark.parametrize(
    "text",
    [
        "user_id,skill_id,correct\n1,5,1\n",  # a CSV with a header row
        "3\n1,2,3\n1,0\n",  # DKT with a response missing
        "2\n1,2\n1,2\n",  # responses that are not 0 or 1
        "",
    ],
)
def test_an_unknown_format_is_refused_naming_the_expected_ones(tmp_path, text):
    (tmp_path / "odd_train1.csv").write_text(text)
    (tmp_path / "odd_test1.csv").write_text("1\n4\n1\n")
    with pytest.raises(kt_data.DataError) as refused:
        kt_data.load(tmp_path, 1)
    assert "odd_train1.csv" in str(refused.value)
    assert "pid format (4 lines a learner" in str(refused.value)
    assert "DKT format (3 lines a learner" in str(refused.value)


def test_a_folder_without_fold_files_says_what_names_it_expects(tmp_path):
    with pytest.raises(kt_data.DataError, match="no train file for fold 2: expected files named"):
        kt_data.load(tmp_path, 2)
    with pytest.raises(kt_data.DataError, match="no data folder"):
        kt_data.load(tmp_path / "missing", 1)


def test_kt_build_on_another_data_set_names_it_on_the_card_and_in_the_onnx(dkt_dir, tmp_path):
    out = tmp_path / "built"
    card = kt_build.build(1, out, epochs=2, log=lambda _: None, data_dir=dkt_dir)
    assert card["data"].startswith("the data set 'tiny' (source not recorded), DKT format")
    assert "ASSISTments" not in json.dumps(card)
    assert set(card["data_sha256"]) == {"tiny_train1.csv", "tiny_test1.csv"}
    assert "every 5th training learner" in card["split"] and card["metrics_test_int8"]["auc"] > 0.5
    metadata = {p.key: p.value for p in onnx.load(str(out / "kt.int8.onnx")).metadata_props}
    assert metadata["data"] == card["data"] and "tiny fold 1" in metadata["title"]
    assert json.loads(metadata["data_sha256"]) == card["data_sha256"]
    assert json.loads((out / "kt.int8.card.json").read_text())["data"] == card["data"]
    assert (out / kt_build.WEIGHTS).is_file()


def test_kt_build_refuses_an_unknown_format_in_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "odd_train1.csv").write_text("user_id,skill_id,correct\n1,5,1\n")
    (tmp_path / "data" / "odd_test1.csv").write_text("user_id,skill_id,correct\n1,5,1\n")
    out = tmp_path / "out"
    ran = subprocess.run(
        [sys.executable, "-m", "models.knowledge_tracing.training.build", "--data", str(tmp_path / "data"),
         "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert ran.stderr.strip().count("\n") == 0 and "expected the pid format" in ran.stderr
    assert not out.exists()


def test_the_benchmark_takes_data_and_refuses_an_unknown_format(tmp_path):
    (tmp_path / "odd_train1.csv").write_text("not,a,kt,file\n")
    (tmp_path / "odd_test1.csv").write_text("1\n4\n1\n")
    ran = subprocess.run(
        [sys.executable, str(REPO / "bench" / "knowledge_tracing.py"), "--data", str(tmp_path),
         "--folds", "1", "--json", str(tmp_path / "out.json")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert "expected the pid format" in ran.stderr and not (tmp_path / "out.json").exists()
