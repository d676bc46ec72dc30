"""The tutor inside the real `schoolbox serve`: the supervisor starts the tutor service,
and answers stream over real HTTP from waitress, word by word."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
        # The answer came from the model that the supervisor's tutor service loaded.
        assert data[-1]["model"] == default.NAME and data[-1]["outcome"] == "answered"
    finally:
        server.terminate()
        server.wait(timeout=15)
