"""The tutor inside the real `schoolbox serve`: the supervisor starts the tutor service,
and answers stream over real HTTP from waitress, word by word."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest
import requests

from appliance.demo.seed import LEARNER_PIN
from models.registry import default
from models.tutor import client as tutor
from tests.conftest import SCHOOLBOX, start_serve, wait_ready

pytestmark = pytest.mark.slow


def test_serve_starts_the_tutor_and_answers_stream_over_real_http(tmp_path, tutor_home):
    home = tmp_path / "box"
    home.mkdir()
    # The model store of the session's tutor, as hard links: no 98 MB copy.
    shutil.copytree(tutor_home / "models", home / "models", copy_function=os.link)
    subprocess.run([SCHOOLBOX, "--home", str(home), "demo", "--no-serve"], check=True,
                   capture_output=True)  # fmt: skip
    server, port = start_serve(home, tmp_path / "serve.log", tutor_socket=tmp_path / "t.sock")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, tmp_path / "serve.log")
        learner = requests.Session()
        token = learner.get(f"{base}/api/v1/session").json()["csrf_token"]
        learner_id = learner.get(f"{base}/api/v1/signin/classes/1/learners").json()["learners"][0]
        signed_in = learner.post(
            f"{base}/api/v1/session",
            json={"learner_id": learner_id["id"], "pin": LEARNER_PIN},
            headers={"X-CSRFToken": token},
        )
        assert signed_in.ok, signed_in.text
        headers = {"X-CSRFToken": signed_in.json()["csrf_token"]}
        ask = {"question": "What are equal parts?", "stream": True}
        for _ in range(300):  # the service loads the model while the web workers start
            if (tutor.status(tmp_path / "t.sock") or {}).get("model"):
                break
            time.sleep(0.1)
        reply = learner.post(f"{base}/api/v1/tutor/answers", json=ask, headers=headers,
                             stream=True, timeout=120)  # fmt: skip
        assert reply.status_code == 200
        arrivals, events, data = [], [], []
        for line in reply.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                events.append(line[7:])
                arrivals.append(time.monotonic())
            elif line.startswith("data: "):
                data.append(json.loads(line[6:]))
        assert events[0] == "sources" and events[-1] == "done"
        tokens = [t for t, e in zip(arrivals, events, strict=True) if e == "token"]
        assert len(tokens) >= 5
        # Streamed, not buffered: the words arrived spread over the answer's generation.
        assert tokens[-1] - tokens[0] > 0.1
        # The answer came from the model that the supervisor's tutor service loaded. Under
        # strace (test_no_phoning_home runs this test so) a slow VM may reach the time cap:
        # "cut" is the model's answer too, ended visibly (CI saw it once, 2026-12-05).
        assert data[-1]["model"] == default.NAME
        assert data[-1]["outcome"] in ("answered", "cut")
    finally:
        server.terminate()
        server.wait(timeout=15)


CLASS_QUESTIONS = [
    "What are equal parts?",
    "What does the bottom number mean?",
    "What does the top number mean?",
    "What is a unit fraction?",
    "Why must the parts be the same size?",
    "How do I write three out of four as a fraction?",
    "What is a numerator?",
    "What is a denominator?",
    "Is one half a fraction?",
    "How many quarters make a whole?",
    "What fraction is one slice of a pizza cut in 8?",
    "Can a whole be cut into 5 equal parts?",
]


def test_a_classroom_asking_at_once_all_get_the_models_words(tmp_path, tutor_home):
    # Issue 15: twelve learners on one lesson ask at the same instant, through the real
    # server, waitress and the tutor service's batch; every one gets the model's words.
    home = tmp_path / "box"
    home.mkdir()
    shutil.copytree(tutor_home / "models", home / "models", copy_function=os.link)
    subprocess.run([SCHOOLBOX, "--home", str(home), "demo", "--no-serve"], check=True,
                   capture_output=True)  # fmt: skip
    server, port = start_serve(
        home, tmp_path / "serve.log", workers=2, tutor_socket=tmp_path / "t.sock",
        tutor_max_tokens=24,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, tmp_path / "serve.log")
        for _ in range(300):
            if (tutor.status(tmp_path / "t.sock") or {}).get("model"):
                break
            time.sleep(0.1)
        assert tutor.status(tmp_path / "t.sock")["parallel"] >= len(CLASS_QUESTIONS)
        learners = [_signed_in(base, n) for n in range(len(CLASS_QUESTIONS))]
        # Opening the lesson page has the tutor read the lesson before anyone asks.
        session, _ = learners[0]
        assert session.get(f"{base}/learn/lessons/{LESSON}").status_code == 200
        for _ in range(300):
            if tutor.status(tmp_path / "t.sock").get("lessons_kept"):
                break
            time.sleep(0.1)
        assert tutor.status(tmp_path / "t.sock")["lessons_kept"] == 1
        barrier = threading.Barrier(len(learners))
        finals: dict[int, tuple[int, list[str], dict]] = {}

        def ask(n: int) -> None:
            session, headers = learners[n]
            body = {"question": CLASS_QUESTIONS[n], "lesson_id": LESSON, "stream": True}
            barrier.wait()
            reply = session.post(f"{base}/api/v1/tutor/answers", json=body, headers=headers,
                                 stream=True, timeout=300)  # fmt: skip
            words, done = [], {}
            for event, data in _events(reply):
                if event == "token":
                    words.append(data["text"])
                elif event == "done":
                    done = data
            finals[n] = (reply.status_code, words, done)

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(learners))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert len(finals) == len(CLASS_QUESTIONS)
        for status, words, done in finals.values():
            assert status == 200 and "".join(words).strip(), (status, done)
            assert done["model"] == default.NAME
            assert done["outcome"] in ("answered", "cut"), (
                done
            )  # the model's words, not the lessons'
    finally:
        server.terminate()
        server.wait(timeout=15)


LESSON = "fractions-01-parts-of-a-whole"


def _signed_in(base: str, index: int) -> tuple[requests.Session, dict]:
    """Learner `index` of the demo school, signed in with the demo PIN."""
    session = requests.Session()
    token = session.get(f"{base}/api/v1/session").json()["csrf_token"]
    roster = session.get(f"{base}/api/v1/signin/classes/1/learners").json()["learners"]
    reply = session.post(
        f"{base}/api/v1/session",
        json={"learner_id": roster[index]["id"], "pin": LEARNER_PIN},
        headers={"X-CSRFToken": token},
    )
    assert reply.ok, reply.text
    return session, {"X-CSRFToken": reply.json()["csrf_token"]}


def _events(reply: requests.Response):
    event = None
    for line in reply.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])
