"""An enrolled box (stolen or broken) signs what it likes: the hub checks every value of
every record against docs/bundle-format.md, refuses with 400 naming the record and the
field, and stores nothing. Bundles are built here byte by byte from that page, so they
can hold what sync/bundle.py would never write."""

from __future__ import annotations

import json
import os
import struct
import zlib

import pytest
import requests

from appliance.store import site
from sync import bundle, enrolment, policy, record_format
from sync.box import outbox, transport
from sync.bundle import BundleError
from sync.files import canonical
from sync.hub import home as hub_store

LEARNER, CLASS = "3f2a" * 6, "9c1b" * 6  # pseudonyms: 24 hex digits
ID = "01890a5d-ac96-7000-8000-000000000001"
MASTERY = ["learner", "skill", "p", "answers", "model"]
CLASS_SKILLS = ["class", "skill", "learners", "mean_p", "answers"]
ATTEMPTS = [*policy.FIELDS["attempts"], "response"]


def _table(fields: list[str], row: str) -> str:
    """A payload of one table with one row, `row` in JSON's own text (NaN, Infinity)."""
    return f'{{"fields":{json.dumps(fields)},"rows":[[{row}]]}}'


def _answer(item: str = '"fr01-02"', response: str = '"1/2"', correct: str = "1") -> str:
    return _table(ATTEMPTS, f'"{ID}","{LEARNER}",{item},"fr01",{correct},0,4000,{response}')


# the tamper suite's seven failures, and their kin: payload text, what the refusal names
PAYLOADS = {
    "NaN mastery": (
        '{"mastery":' + _table(MASTERY, f'"{LEARNER}","fractions.equivalent",NaN,3,null') + "}",
        "mastery record 1, field p: the value is nan, not a finite number",
    ),
    "10**30 mastery": (
        '{"mastery":'
        + _table(MASTERY, f'"{LEARNER}","fractions.equivalent",{10**30},3,null')
        + "}",
        "mastery record 1, field p: the value is 1000000000000000000000000000000, outside 0-1",
    ),  # fmt: skip
    "Infinity class mean": (
        '{"class_skills":'
        + _table(CLASS_SKILLS, f'"{CLASS}","fractions.equivalent",3,Infinity,9')
        + "}",
        "class_skills record 1, field mean_p: the value is inf, not a finite number",
    ),  # fmt: skip
    "a field named twice": (
        '{"mastery":' + _table([*MASTERY, "p"], f'"{LEARNER}","f.e",0.5,3,null,0.9') + "}",
        "mastery records name the field 'p' twice",
    ),
    "a record type named twice": (
        '{"mastery":'
        + _table(MASTERY, f'"{LEARNER}","f.e",0.5,3,null')
        + ',"mastery":'
        + _table(MASTERY, f'"{LEARNER}","f.e",0.9,3,null')
        + "}",
        "the key 'mastery' appears twice",
    ),  # fmt: skip
    "a table's key named twice": (
        '{"mastery":{"fields":[],"rows":[],'
        + _table(MASTERY, f'"{LEARNER}","f.e",0.5,3,null')[1:]
        + "}",
        "the key 'fields' appears twice",
    ),  # fmt: skip
    "5 MB of text in an item": (
        '{"attempts":' + _answer(item='"' + "x" * 5_000_000 + '"') + "}",
        "attempts record 1, field item: the value is 'xxxxx",
    ),
    "a lone surrogate in an item": (
        '{"attempts":' + _answer(item='"fr\\ud800"') + "}",
        "attempts record 1, field item: the value is 'fr\\ud800', not a content id",
    ),
    "a lone surrogate in a response": (
        '{"attempts":' + _answer(response='"\\udfff"') + "}",
        "attempts record 1, field response: the value is not valid UTF-8",
    ),
    "a NUL in a response": (
        '{"attempts":' + _answer(response='"a\\u0000b"') + "}",
        "attempts record 1, field response: the value holds a NUL",
    ),
    "an answer graded 2": (
        '{"attempts":' + _answer(correct="2") + "}",
        "attempts record 1, field correct: the value is 2, outside 0-1",
    ),
    "2**31 answers": (
        '{"mastery":' + _table(MASTERY, f'"{LEARNER}","f.e",0.5,{2**31},null') + "}",
        "mastery record 1, field answers: the value is 2147483648, outside 0-2,147,483,647",
    ),
    "a learner's real name": (
        '{"mastery":' + _table(MASTERY, '"Amina Diallo","f.e",0.5,3,null') + "}",
        "mastery record 1, field learner: the value is 'Amina Diallo', not a pseudonym",
    ),
}


def _crafted(header: dict, payload: bytes, district, box_keys, signed: bool = True) -> bytes:
    """A bundle laid out as docs/bundle-format.md says, from a header and payload as given."""
    head = canonical({"format": 1, **header})
    ciphertext = bundle._suite("x25519").encrypt(payload, district.x25519, info=bundle._info(head))
    body = struct.pack(">4sBI", b"SBXB", 1, len(head)) + head
    body += struct.pack(">I", len(ciphertext)) + ciphertext
    return body + (box_keys.signing.sign(body) if signed else os.urandom(64))


def _header(box_id: str, payload_text: str) -> dict:
    try:
        counts = bundle.counts_of(json.loads(payload_text))
    except ValueError:
        counts = {}
    header = {"box_id": box_id, "seq": 1, "prev": "", "created_at": "2026-11-25T10:00:00Z",
              "counts": counts, "suite": "x25519"}  # fmt: skip
    return header


def _stored(hub_home, box_id: str) -> dict:
    hub = hub_store.open_hub(hub_home)
    try:
        found = {
            table: hub.execute(
                f"SELECT count(*) FROM {table} WHERE box_id = ?",  # noqa: S608
                (box_id,),
            ).fetchone()[0]
            for table in ("attempts", "mastery", "class_skills", "received")
        }
        found["last_seq"] = hub.execute(
            "SELECT last_seq FROM boxes WHERE box_id = ?", (box_id,)
        ).fetchone()[0]
    finally:
        hub.close()
    return found


def test_an_enrolled_box_cannot_make_the_hub_fail_or_store_bad_values(
    box, db, hub_home, hub_server
):
    box_id = site.get(db)["box_id"]
    box_keys = enrolment.ensure_box_keys(box, box_id)
    district = hub_store.district_keys(hub_home).public()
    url = f"http://127.0.0.1:{hub_server}/v1/bundles"
    for case, (text, names) in PAYLOADS.items():
        payload = zlib.compress(text.encode(), 9)
        data = _crafted(_header(box_id, text), payload, district, box_keys)
        assert len(data) < bundle.MAX_BYTES, case
        reply = requests.post(url, data=data, timeout=30)
        assert reply.status_code == 400, (case, reply.status_code, reply.text)
        assert names in reply.json()["error"], (case, reply.json())
    nothing = {"attempts": 0, "mastery": 0, "class_skills": 0, "received": 0, "last_seq": 0}
    assert _stored(hub_home, box_id) == nothing
    # Nothing was used up: the box's own bundles still go in as number 1, 2, ...
    sealed = outbox.seal_pending(db, box)
    assert transport.send_pending(db, box, f"http://127.0.0.1:{hub_server}") == len(sealed)
    assert _stored(hub_home, box_id)["last_seq"] == len(sealed)


def test_a_header_the_hub_cannot_store_is_refused_before_its_signature_is_read(
    box, db, hub_home, hub_server
):
    box_id = site.get(db)["box_id"]
    box_keys = enrolment.ensure_box_keys(box, box_id)
    district = hub_store.district_keys(hub_home).public()
    text = '{"usage":' + _table(policy.FIELDS["usage"], '"2026-11-24",3,2,0') + "}"
    payload = zlib.compress(text.encode(), 9)
    url = f"http://127.0.0.1:{hub_server}/v1/bundles"
    for changes, names in [
        ({"box_id": "\ud800"}, "box_id is not 1-64 letters"),
        ({"box_id": box_id + "\udc00"}, "box_id is not 1-64 letters"),
        ({"box_id": "x" * 65}, "box_id is not 1-64 letters"),
        ({"seq": 10**30}, "seq is not a whole number from 1 to 2147483647"),
        ({"prev": "\ud800" * 64}, "prev is not a SHA-256"),
        ({"created_at": "2026-11-25T10:00:00\ud800"}, "created_at is not an ISO-8601 UTC time"),
        ({"created_at": "\u0662026-11-25T10:00Z"}, "created_at is not an ISO-8601 UTC time"),
        ({"counts": {"usage\ud800": 1}}, "counts is not record types"),
        ({"counts": {"usage": float("nan")}}, "counts is not record types"),
    ]:
        for signed in (True, False):  # by the enrolled box's key, and by nobody
            data = _crafted(_header(box_id, text) | changes, payload, district, box_keys, signed)
            reply = requests.post(url, data=data, timeout=30)
            assert reply.status_code == 400, (changes, signed, reply.status_code, reply.text)
            assert names in reply.json()["error"], (changes, reply.json())
    assert _stored(hub_home, box_id)["last_seq"] == 0


def test_every_record_the_box_itself_seals_passes_the_check(box, db, hub_home):
    """The format is no stricter than the box: a demo school's own bundles all pass."""
    box_keys = enrolment.ensure_box_keys(box, site.get(db)["box_id"])
    district = hub_store.district_keys(hub_home)
    assert outbox.seal_pending(db, box)
    kinds = set()
    for row in outbox.pending(db):
        data = (outbox.folder(box) / row["file"]).read_bytes()
        _, records = bundle.open_bundle(data, lambda _: box_keys.public(), district)
        record_format.check(records)
        kinds |= set(records)
    assert kinds >= {"attempts", "mastery", "class_skills", "health"}


def test_values_at_the_edges_of_each_range_pass_and_just_past_them_are_refused():
    edges = {
        "mastery": (MASTERY, [LEARNER, "f.e", 0, 0, None], [LEARNER, "f.e", 1, 2**31 - 1, "m"]),
        "attempts": (
            ATTEMPTS,
            [ID, LEARNER, "a", None, 0, None, None, None],
            [ID, LEARNER, "x" * 64, "l" * 64, 1, 9, 3_600_000, "é" * 500],
        ),
        "erasures": (
            ["learner", "erased_at"],
            [LEARNER, "2026-11-25"],
            [LEARNER, "2026-11-25T10:00:00.123Z"],
        ),  # fmt: skip
    }
    for kind, (fields, low, high) in edges.items():
        record_format.check({kind: {"fields": fields, "rows": [low, high]}})
    for kind, fields, row, names in [
        ("mastery", MASTERY, [LEARNER, "f.e", -0.001, 0, None], "field p"),
        ("mastery", MASTERY, [LEARNER, "f.e", True, 0, None], "field p: the value is true"),
        ("attempts", ATTEMPTS, [ID, LEARNER, "a", None, 0, None, 3_600_001, None], "duration_ms"),
        ("attempts", ATTEMPTS, [ID, LEARNER, "a", None, 0, None, None, "é" * 501], "501 char"),
        ("attempts", ATTEMPTS, [ID.replace("-7", "-4"), LEARNER, "a", None, 0, 0, 0, None], "id"),
        ("erasures", ["learner", "erased_at"], [LEARNER, "2026-02-30"], "not a real date"),
        ("usage", policy.FIELDS["usage"], ["2026-11-24", -1, 0, 0], "field answers"),
        ("usage", policy.FIELDS["usage"], ["\u0662026-11-24", 1, 1, 0], "field day"),
    ]:
        with pytest.raises(BundleError, match=names) as refused:
            record_format.check({kind: {"fields": fields, "rows": [row]}})
        assert refused.value.status == 400
