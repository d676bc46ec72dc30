"""Box and hub together: a real `schoolbox hub serve` on loopback behind a link that
drops, refusals that change nothing, erasure at the hub, and a USB stick for two boxes."""

from __future__ import annotations

import json
import shutil
import socket
import threading

import pytest
import requests

from appliance.config import Config
from appliance.store import audit, open_db, site, transaction, users
from appliance.store.ids import uuid7
from sync import acknowledgement, bundle, enrolment, keys, policy
from sync.box import outbox, transport
from sync.box.outbox import Settings
from sync.bundle import BundleError
from sync.hub import home as hub_store
from sync.hub import receive
from sync.hub.app import route
from tests.sync.conftest import make_box

SMALL = Settings(max_bundle_bytes=8_000)  # many bundles from the demo school


def _hub_count(hub_home, table: str, box_id: str | None = None) -> int:
    db = hub_store.open_hub(hub_home)
    try:
        where, params = ("WHERE box_id = ?", (box_id,)) if box_id else ("", ())
        return db.execute(f"SELECT count(*) FROM {table} {where}", params).fetchone()[0]  # noqa: S608
    finally:
        db.close()


class DroppingProxy:
    """A TCP proxy to the hub that, on every `every`-th connection, passes the request on
    but drops the reply: the hub applied the bundle, the box never heard."""

    def __init__(self, target_port: int, every: int = 3):
        self.target, self.every, self.count = target_port, every, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.count += 1
            threading.Thread(target=self._pipe, args=(client, self.count), daemon=True).start()

    def _pipe(self, client, number):
        with client, socket.create_connection(("127.0.0.1", self.target)) as upstream:
            client.settimeout(5)
            upstream.settimeout(10)
            request = _read_http(client)
            upstream.sendall(request)
            reply = _read_until_closed(upstream)
            if number % self.every:
                client.sendall(reply)  # else: dropped on the floor


def _read_http(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), 0)  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    head = head.replace(b"Connection: keep-alive", b"Connection: close")
    if b"connection: close" not in head.lower():
        head += b"\r\nConnection: close"
    return head + b"\r\n\r\n" + body


def _read_until_closed(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_answers_reach_a_real_hub_exactly_once_through_a_link_that_drops(
    box, db, hub_home, hub_server
):
    proxy = DroppingProxy(hub_server, every=3)
    sealed = outbox.seal_pending(db, box, SMALL)
    assert len(sealed) >= 4
    sent = transport.send_pending(db, box, f"http://127.0.0.1:{proxy.port}", sleep=lambda _: None)
    assert sent == len(sealed) and outbox.pending(db) == []
    assert not list(outbox.folder(box).glob("*.sbxb"))  # pruned once acknowledged
    box_id = site.get(db)["box_id"]
    stored = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert _hub_count(hub_home, "attempts", box_id) == stored  # nothing lost, nothing twice
    assert _hub_count(hub_home, "received", box_id) == len(sealed)
    assert proxy.count > len(sealed)  # replies were dropped and bundles sent again
    page = requests.get(f"http://127.0.0.1:{hub_server}/", timeout=5).text
    assert site.get(db)["name"] in page and "Mastery by school and skill" in page
    assert "fractions.equivalent" in page  # per-school aggregates from the class records


def test_refused_bundles_change_nothing_at_the_hub(box, db, hub_home):
    outbox.seal_pending(db, box, SMALL)
    files = [(outbox.folder(box) / r["file"]).read_bytes() for r in outbox.pending(db)]
    hub = hub_store.open_hub(hub_home)

    def refused(data: bytes, status: int, match: str):
        before = hub.execute("SELECT count(*) FROM attempts").fetchone()[0]
        with pytest.raises(BundleError, match=match) as error:
            receive.receive(hub, hub_home, data)
        assert error.value.status == status
        assert hub.execute("SELECT count(*) FROM attempts").fetchone()[0] == before

    refused(files[1], 409, "out of order")  # reordered: 2 before 1
    assert receive.receive(hub, hub_home, files[0])["outcome"] == "applied"
    assert receive.receive(hub, hub_home, files[0])["outcome"] == "duplicate"  # replayed
    tampered = bytearray(files[1])
    tampered[len(tampered) // 2] ^= 1
    refused(bytes(tampered), 403, "signature")
    refused(files[1][:-10], 400, "truncated")
    box_keys = enrolment.ensure_box_keys(box, site.get(db)["box_id"])
    header = bundle.read_header(files[1])
    records = {"attempts": {"fields": policy.FIELDS["attempts"], "rows": []}}
    stranger = keys.generate("district")
    wrong_key = bundle.seal(
        bundle.Header(header.box_id, 2, header.prev, header.created_at, {"attempts": 0}),
        records, stranger.public(), box_keys,
    )  # fmt: skip
    refused(wrong_key, 403, "not sealed to this district")
    fork = bundle.seal(
        bundle.Header(header.box_id, 1, "", header.created_at, {"attempts": 0}),
        records, hub_store.district_keys(hub_home).public(), box_keys,
    )  # fmt: skip
    refused(fork, 409, "different bundle 1")
    unknown = bundle.seal(
        bundle.Header("no-such-box", 1, "", header.created_at, {"attempts": 0}),
        records, hub_store.district_keys(hub_home).public(), keys.generate("no-such-box"),
    )  # fmt: skip
    refused(unknown, 403, "not enrolled")
    from werkzeug.test import Client

    from sync.hub.app import make_app

    oversize = Client(make_app(hub_home, max_bytes=1000)).post("/v1/bundles", data=files[1])
    assert oversize.status_code == 413 and "at most 1000 bytes" in oversize.get_json()["error"]
    assert (
        receive.receive(hub, hub_home, files[1])["outcome"] == "applied"
    )  # the real one still fits
    hub.close()


def test_an_erased_learner_leaves_nothing_at_the_hub(box, db, hub_home, ids):
    def deliver():
        hub = hub_store.open_hub(hub_home)
        for row in outbox.pending(db):
            ack = receive.receive(hub, hub_home, (outbox.folder(box) / row["file"]).read_bytes())
            transport._accept(db, box, row, ack)
        hub.close()

    outbox.seal_pending(db, box)
    deliver()
    learner_id = ids["learners"]["Class 4A"][0]
    public_id = db.conn.execute(
        "SELECT public_id FROM users WHERE id = ?", (learner_id,)
    ).fetchone()[0]
    pseudonym = policy.pseudonymiser(box)("learner", public_id)
    hub = hub_store.open_hub(hub_home)
    assert hub.execute("SELECT count(*) FROM attempts WHERE learner = ?", (pseudonym,)).fetchone()[
        0
    ]
    with transaction(db):
        users.erase_learner(db, audit.SYSTEM, learner_id)
    outbox.seal_pending(db, box)
    deliver()
    for table in ("attempts", "mastery"):
        assert not hub.execute(f"SELECT 1 FROM {table} WHERE learner = ?", (pseudonym,)).fetchone()  # noqa: S608
    assert hub.execute("SELECT 1 FROM erasures WHERE learner = ?", (pseudonym,)).fetchone()
    logged = hub.execute("SELECT detail FROM hub_audit WHERE action = 'learner.erase'").fetchone()
    assert json.loads(logged[0])["learner"] == pseudonym
    assert db.conn.execute("SELECT 1 FROM audit_log WHERE action = 'learner.erase'").fetchone()
    hub.close()


def test_two_boxes_round_trip_on_one_usb_stick(config, db, hub_home, tmp_path):
    second = Config(home=tmp_path / "second", testing=True)
    shutil.copytree(config.home, second.home)
    other = open_db(second.db_path)
    with transaction(other):
        other.conn.execute("UPDATE site SET box_id = ?, name = 'Riverside'", (uuid7(),))
    homes = [(config.home, db), (second.home, other)]
    for home, database in homes:
        make_box(home, hub_home, database)
    stick = tmp_path / "stick"
    stick.mkdir()
    for home, database in homes:
        outbox.seal_pending(database, home, SMALL)
        assert transport.export_to(database, home, stick, site.get(database)["box_id"]) > 0
    results = receive.import_from_stick(hub_home, stick)
    assert set(results.values()) == {"applied"}
    again = receive.import_from_stick(hub_home, stick)  # the stick read twice: nothing doubles
    assert set(again.values()) == {"duplicate"}
    for home, database in homes:
        box_id = site.get(database)["box_id"]
        assert transport.import_acks(database, home, stick, box_id) > 0
        assert outbox.pending(database) == []
        stored = database.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
        assert _hub_count(hub_home, "attempts", box_id) == stored
    other.conn.close()


def test_a_box_prunes_only_on_an_acknowledgement_the_district_signed(box, db, hub_home):
    outbox.seal_pending(db, box)
    [row] = outbox.pending(db)
    forged = acknowledgement.sign(
        keys.generate("district"), "x", row["seq"], row["digest"], "applied"
    )
    with pytest.raises(ValueError, match="not signed by the district"):
        transport._accept(db, box, row, forged)
    genuine = acknowledgement.sign(
        hub_store.district_keys(hub_home), "x", row["seq"], "0" * 64, "applied"
    )
    with pytest.raises(ValueError, match="did not send"):
        transport._accept(db, box, row, genuine)
    assert len(outbox.pending(db)) == 1 and (outbox.folder(box) / row["file"]).exists()


def test_the_hub_never_reads_more_than_a_bundle_can_be(hub_server):
    def chunks():  # chunked transfer: no Content-Length to refuse up front
        for _ in range(40):
            yield b"x" * 65536

    reply = requests.post(f"http://127.0.0.1:{hub_server}/v1/bundles", data=chunks(), timeout=30)
    assert reply.status_code == 413 and "at most" in reply.json()["error"]


def test_nothing_leaves_once_the_school_withdraws_consent(box, db, hub_server, tmp_path):
    outbox.seal_pending(db, box)
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", False)
    assert transport.send_pending(db, box, f"http://127.0.0.1:{hub_server}") == 0
    assert transport.export_to(db, box, tmp_path, site.get(db)["box_id"]) == 0
    assert len(outbox.pending(db)) == 1


def test_records_outside_the_policy_or_of_the_wrong_type_are_refused(box, db, hub_home):
    box_keys = enrolment.ensure_box_keys(box, site.get(db)["box_id"])
    district = hub_store.district_keys(hub_home).public()
    hub = hub_store.open_hub(hub_home)
    fields = policy.FIELDS["health"]
    for records, match in [
        ({"names": {"fields": ["name"], "rows": [["Amina"]]}}, "not one a box may send"),
        (
            {"health": {"fields": fields, "rows": [["1", 1, 1, "<script>"]]}},
            "health record 1, field backlog: the value is text, not a whole number",
        ),
        (
            {"health": {"fields": fields[:2], "rows": [["1", 1]]}},
            "health records lack the field.s. database_mb, backlog",
        ),
    ]:
        header = bundle.Header(box_keys.owner, 1, "", "2026-11-25T10:00:00Z",
                               bundle.counts_of(records))  # fmt: skip
        with pytest.raises(BundleError, match=match) as refused:
            receive.receive(hub, hub_home, bundle.seal(header, records, district, box_keys))
        assert refused.value.status == 400
    assert hub.execute("SELECT last_seq FROM boxes").fetchone()[0] == 0
    hub.close()


def test_the_hub_routes_its_five_addresses_and_refuses_the_rest():
    assert route("POST", "/v1/bundles") == ("bundles", {}, 200)
    assert route("HEAD", "/healthz") == ("healthz", {}, 200)
    assert route("GET", "/v1/updates/pack-1/pack.zip") == (
        "update_file", {"folder": "pack-1", "file": "pack.zip"}, 200)  # fmt: skip
    assert route("GET", "/v1/bundles") == (None, {}, 405)
    assert route("POST", "/v1/updates/pack-1/pack.zip") == (None, {}, 405)
    for path in ("/v1/updates/pack-1", "/v1/updates/a/b/c", "/v1/updates//x", "/admin"):
        assert route("GET", path) == (None, {}, 404), path
