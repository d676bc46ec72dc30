"""Bundles: sealed to the district, signed by the box, and refused for anything wrong."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync import bundle, keys
from sync.bundle import BundleError, Header

BOX, DISTRICT, STRANGER = keys.generate("box-1"), keys.generate("district"), keys.generate("x")
RECORDS = {
    "attempts": {
        "fields": ["id", "learner", "item", "correct", "hints"],
        "rows": [["01890a5d-ac96-7000-8000-000000000001", "p-3f2a", "fr01-02", 1, 0]] * 50,
    },
    "erasures": {"fields": ["learner"], "rows": [["p-9c1b"]]},
}


def _header(seq: int = 1, suite: str = "x25519", records=RECORDS) -> Header:
    counts = bundle.counts_of(records)
    return Header("box-1", seq, "", "2026-11-25T10:00:00Z", counts, suite)


def _keys_of(box_id: str):
    return BOX.public() if box_id == "box-1" else None


def _open(data: bytes, district=DISTRICT, **kw):
    return bundle.open_bundle(data, _keys_of, district, **kw)


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_a_bundle_opens_to_its_records_with_either_suite(suite):
    sealed = bundle.seal(_header(suite=suite), RECORDS, DISTRICT.public(), BOX)
    header, records = _open(sealed)
    assert records == RECORDS and header.suite == suite and header.seq == 1
    assert bundle.read_header(sealed) == header
    again = bundle.seal(_header(suite=suite), RECORDS, DISTRICT.public(), BOX)
    assert again != sealed  # a fresh ephemeral key every time


def test_tampering_anywhere_is_refused():
    sealed = bundle.seal(_header(), RECORDS, DISTRICT.public(), BOX)
    head_at = sealed.index(b'"seq":1')
    for position in (head_at + 6, len(sealed) // 2, len(sealed) - 70, len(sealed) - 1):
        changed = bytearray(sealed)
        changed[position] ^= 0x01
        with pytest.raises(BundleError) as refused:
            _open(bytes(changed))
        assert refused.value.status in (400, 403)


def test_the_wrong_district_key_an_unknown_box_or_a_forged_signature_is_refused():
    sealed = bundle.seal(_header(), RECORDS, DISTRICT.public(), BOX)
    with pytest.raises(BundleError, match="not sealed to this district"):
        _open(sealed, district=STRANGER)
    with pytest.raises(BundleError, match="not enrolled"):
        bundle.open_bundle(sealed, lambda _: None, DISTRICT)
    forged = bundle.seal(_header(), RECORDS, DISTRICT.public(), STRANGER)  # claims box-1
    with pytest.raises(BundleError, match="signature") as refused:
        _open(forged)
    assert refused.value.status == 403


def test_truncated_oversize_and_foreign_input_get_clear_statuses():
    sealed = bundle.seal(_header(), RECORDS, DISTRICT.public(), BOX)
    for cut in (0, 5, 20, len(sealed) - 1):
        with pytest.raises(BundleError, match="truncated|not a Schoolbox") as refused:
            _open(sealed[:cut])
        assert refused.value.status == 400
    with pytest.raises(BundleError, match="over") as refused:
        _open(sealed, max_bytes=len(sealed) - 1)
    assert refused.value.status == 413
    with pytest.raises(BundleError, match="not a Schoolbox"):
        _open(b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(BundleError, match="over") as refused:
        bundle.seal(_header(), RECORDS, DISTRICT.public(), BOX, max_bytes=100)
    assert refused.value.status == 413


def test_a_suite_the_hub_does_not_accept_is_refused():
    sealed = bundle.seal(_header(), RECORDS, DISTRICT.public(), BOX)
    with pytest.raises(BundleError, match="not accepted"):
        _open(sealed, suites=("mlkem768-x25519",))


def test_counts_must_match_and_a_payload_bomb_is_refused(monkeypatch):
    with pytest.raises(BundleError, match="counts"):
        bundle.seal(_header(records={}), RECORDS, DISTRICT.public(), BOX)
    big = {"attempts": {"fields": ["n"] * 1000, "rows": [[0] * 1000] * 1000}}  # ~2 MB
    sealed = bundle.seal(_header(records=big), big, DISTRICT.public(), BOX)
    monkeypatch.setattr(bundle, "MAX_PAYLOAD_BYTES", 100_000)
    with pytest.raises(BundleError, match="payload is malformed"):
        _open(sealed)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2048))
def test_the_parser_only_ever_refuses_random_bytes_cleanly(data):
    with pytest.raises(BundleError):
        _open(data)


_VALID = bundle.seal(_header(), RECORDS, DISTRICT.public(), BOX)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)), min_size=1,
                max_size=4),
       st.integers(0, 40))  # fmt: skip
def test_the_parser_refuses_every_mutation_of_a_valid_bundle(flips, cut):
    changed = bytearray(_VALID)
    for position, mask in flips:
        changed[position] ^= mask
    changed = bytes(changed[: len(changed) - cut])
    if changed == _VALID:  # flips that cancel out
        assert _open(changed)[1] == RECORDS
        return
    with pytest.raises(BundleError):
        _open(changed)


def test_private_keys_are_written_for_their_owner_only_and_never_overwritten(tmp_path):
    path = tmp_path / "keys" / "box.key"
    keys.write_private(BOX, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = keys.read_private(path)
    assert again.public().to_json() == BOX.public().to_json()
    with pytest.raises(FileExistsError):
        keys.write_private(STRANGER, path)
    path.write_text('{"format": "schoolbox-private-keys/1", "owner": "b"}')
    with pytest.raises(keys.KeyFileError, match="damaged"):
        keys.read_private(path)


def test_public_keys_travel_as_json_with_a_short_fingerprint():
    public = BOX.public()
    copy = keys.PublicKeys.from_json(public.to_json())
    assert copy.to_json() == public.to_json()
    assert copy.fingerprint() == public.fingerprint() != DISTRICT.public().fingerprint()
    assert len(public.fingerprint()) == 19
    with pytest.raises(keys.KeyFileError):
        keys.PublicKeys.from_json({**public.to_json(), "signing": "AAAA"})
