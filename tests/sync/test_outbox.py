"""The outbox on a real demo-school database: what goes up (and what never does), each
answer in exactly one bundle, crash safety, size cap and quota."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from appliance.knowledge import tracing as knowledge
from appliance.store import audit, site, transaction, users
from models.registry import default
from sync import bundle, enrolment, keys, policy
from sync.box import collect, outbox
from sync.box.outbox import Settings

DISTRICT = keys.generate("district")


@pytest.fixture
def box(config, db):
    """The demo school, consented to sync, trusting the district, with mastery traced."""
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
    enrolment.pin_district(config.home, DISTRICT.public().to_json())
    default.install_knowledge_tracing(config.home)
    knowledge.follow(db, config.home)
    return config.home


def _opened(home, db) -> list[tuple[bundle.Header, dict]]:
    box_keys = enrolment.ensure_box_keys(home, site.get(db)["box_id"])
    found = []
    for row in outbox.pending(db):
        data = (outbox.folder(home) / row["file"]).read_bytes()
        found.append(bundle.open_bundle(data, lambda _: box_keys.public(), DISTRICT))
    return found


def test_no_field_outside_the_policy_and_nothing_personal_goes_up(box, db):
    assert outbox.seal_pending(db, box) == [1]
    [(header, records)] = _opened(box, db)
    assert set(records) <= set(policy.FIELDS)
    for kind, table in records.items():
        assert table["fields"] == policy.FIELDS[kind], kind
    assert {"attempts", "mastery", "class_skills", "health"} <= set(records)
    text = json.dumps(records)
    people = db.conn.execute("SELECT display_name, username, public_id FROM users").fetchall()
    for name, username, public_id in people:
        assert name not in text and public_id not in text
        assert username is None or f'"{username}"' not in text
    for response in {r[0] for r in db.conn.execute("SELECT response FROM attempts")}:
        if not response.isdigit():  # typed answers are free text: never sent by default
            assert f'"{response}"' not in text
    learners = {row[1] for row in records["attempts"]["rows"]}
    assert all(len(p) == 24 and int(p, 16) >= 0 for p in learners)
    assert (
        header.counts["attempts"] == db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    )


def test_each_answer_is_in_exactly_one_bundle_and_the_chain_holds(box, db, ids):
    from appliance.store import attempts, content

    outbox.seal_pending(db, box)
    item = content.item(db, "fr01-02")
    for n in range(5):
        attempts.record(db, ids["learners"]["Class 4A"][n], item, "1", True, 0, 900, None)
    assert outbox.seal_pending(db, box) == [2]
    assert outbox.seal_pending(db, box) == []  # nothing new: nothing sealed
    opened = _opened(box, db)
    sent = [row[0] for _, records in opened for row in records["attempts"]["rows"]]
    stored = [collect.upstream_id(r[0]) for r in db.conn.execute("SELECT id FROM attempts")]
    assert sorted(sent) == sorted(stored) and len(set(sent)) == len(sent)
    files = [(outbox.folder(box) / r["file"]).read_bytes() for r in outbox.pending(db)]
    assert opened[1][0].prev == bundle.digest(files[0]) and opened[0][0].prev == ""


def test_a_crash_before_the_commit_leaves_the_old_state(box, db, monkeypatch):
    def power_cut(*_):
        raise OSError("power cut")

    monkeypatch.setattr(outbox, "transaction", power_cut)
    with pytest.raises(OSError):
        outbox.seal_pending(db, box)
    assert outbox.pending(db) == [] and list(outbox.folder(box).glob("*.sbxb"))  # a leftover
    assert db.conn.execute("SELECT count(*) FROM sync_marks").fetchone()[0] == 0
    monkeypatch.undo()
    assert outbox.seal_pending(db, box) == [1]  # the same records, under the same number
    [(_, records)] = _opened(box, db)
    assert len(records["attempts"]["rows"]) == db.conn.execute(
        "SELECT count(*) FROM attempts").fetchone()[0]  # fmt: skip
    assert [p.name for p in outbox.folder(box).glob("*.sbxb")] == ["00000001.sbxb"]


def test_bundles_stay_under_the_size_cap(box, db):
    sealed = outbox.seal_pending(db, box, Settings(max_bundle_bytes=8_000))
    assert len(sealed) > 2 and sealed == list(range(1, len(sealed) + 1))
    assert all(r["bytes"] <= 8_000 for r in outbox.pending(db))
    sent = sum(len(records["attempts"]["rows"]) for _, records in _opened(box, db))
    assert sent == db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]


def test_a_full_outbox_stops_sealing_loudly_and_drops_nothing(box, db, caplog):
    with caplog.at_level(logging.ERROR, logger="schoolbox.sync"), pytest.raises(outbox.OutboxFull):
        outbox.seal_pending(db, box, Settings(quota_bytes=1_000))
    assert "outbox full" in caplog.text
    assert outbox.pending(db) == [] and not db.conn.execute("SELECT 1 FROM sync_marks").fetchone()
    assert outbox.seal_pending(db, box) == [1]  # room again: everything goes


def test_without_the_schools_consent_nothing_is_sealed(box, db):
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", False)
    assert outbox.seal_pending(db, box) == [] and outbox.pending(db) == []


def test_an_erasure_travels_in_the_next_bundle(box, db, ids):
    outbox.seal_pending(db, box)
    learner_id = ids["learners"]["Class 4A"][0]
    public_id = db.conn.execute(
        "SELECT public_id FROM users WHERE id = ?", (learner_id,)
    ).fetchone()[0]
    with transaction(db):
        users.erase_learner(db, audit.SYSTEM, learner_id)
    assert outbox.seal_pending(db, box) == [2]
    records = _opened(box, db)[1][1]
    assert records["erasures"]["rows"][0][0] == policy.pseudonymiser(box)("learner", public_id)
    erased_at = db.conn.execute("SELECT erased_at FROM tombstones").fetchone()[0]
    assert records["erasures"]["rows"][0][1] == erased_at[:10]  # the day, not the moment


def test_an_answer_goes_up_with_its_time_to_the_second_and_nothing_else_changed(box, db):
    outbox.seal_pending(db, box)
    [(_, records)] = _opened(box, db)
    stored = {r[0] for r in db.conn.execute("SELECT id FROM attempts")}
    sent = [row[0] for row in records["attempts"]["rows"]]
    assert len(set(sent)) == len(sent) == len(stored)  # still one id per answer
    assert sorted(sent) == sorted(collect.upstream_id(local) for local in stored)
    for local in stored:
        up = uuid.UUID(collect.upstream_id(local))
        ms = uuid.UUID(local).int >> 80
        assert up.version == 7 and up.int >> 80 == ms - ms % 1000  # cut to the second
        assert up.int & ((1 << 80) - 1) == uuid.UUID(local).int & ((1 << 80) - 1)


def test_a_district_may_add_the_typed_response_but_never_a_name(box, db):
    (box / policy.POLICY_FILE).write_text(json.dumps({"allow": {"attempts": ["response"]}}))
    outbox.seal_pending(db, box)
    [(_, records)] = _opened(box, db)
    assert records["attempts"]["fields"][-1] == "response"
    (box / policy.POLICY_FILE).write_text(json.dumps({"allow": {"attempts": ["display_name"]}}))
    with pytest.raises(policy.PolicyError, match="never sends"):
        policy.fields(box)


def test_the_admin_sees_the_queue_and_a_loud_warning_when_it_fills(box, db, config, ids):
    from appliance.web.app import create_app
    from tests.conftest import as_role

    outbox.seal_pending(db, box, Settings(max_bundle_bytes=8_000))
    waiting = len(outbox.pending(db))
    admin = as_role(create_app(config), "admin", ids)
    page = admin.get("/admin/").get_data(as_text=True)
    assert f"<dt>Bundles waiting</dt><dd>{waiting}</dd>" in page and "outbox holds" not in page
    tight = create_app(config.with_(sync_outbox_quota_mb=0))
    page = as_role(tight, "admin", ids).get("/admin/").get_data(as_text=True)
    assert "the sync outbox holds" in page


def test_answers_after_an_erasure_that_freed_the_latest_rowids_are_still_sealed(box, db, ids):
    from appliance.store import attempts, content

    item = content.item(db, "fr01-02")
    learner, other = ids["learners"]["Class 4A"][:2]
    for _ in range(3):  # the latest answers are this learner's
        attempts.record(db, learner, item, "1", True, 0, 900, None)
    outbox.seal_pending(db, box)
    with transaction(db):
        users.erase_learner(db, audit.SYSTEM, learner)
    attempts.record(db, other, item, "1", True, 0, 900, None)  # may reuse a freed rowid
    assert outbox.seal_pending(db, box) == [2]
    sent = {row[0] for _, records in _opened(box, db) for row in
            records.get("attempts", {"rows": []})["rows"]}  # fmt: skip
    stored = {collect.upstream_id(r[0]) for r in db.conn.execute("SELECT id FROM attempts")}
    assert stored <= sent


def test_a_damaged_pseudonym_key_stops_sync_instead_of_weakening_pseudonyms(box, db):
    policy.pseudonymiser(box)  # made once
    (box / "keys" / "pseudonym.key").write_text("")  # e.g. cut by a power loss elsewhere
    with pytest.raises(policy.PolicyError, match="damaged"):
        outbox.seal_pending(db, box)


def test_every_kind_of_record_is_paged_so_no_bundle_outgrows_the_cap(box, db):
    sealed = outbox.seal_pending(db, box, Settings(answers_per_bundle=40))
    assert len(sealed) > 5
    opened = _opened(box, db)
    assert max(len(r[kind]["rows"]) for _, r in opened for kind in r) <= 40
    sent = [(row[0], row[1]) for _, r in opened for row in r.get("mastery", {"rows": []})["rows"]]
    assert (
        len(sent) == len(set(sent)) == db.conn.execute("SELECT count(*) FROM mastery").fetchone()[0]
    )
