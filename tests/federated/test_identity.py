"""Who may take part: node requests signed with a box's enrolled key, invitations signed
with the district's key, and the district's TLS certificates (cryptography)."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from federated import district, identity, node
from sync import enrolment, keys
from sync.hub import home as hub_store


@pytest.fixture
def hub_home(tmp_path):
    home = tmp_path / "hub"
    hub_store.init(home)
    return home


def enrolled_box(tmp_path, hub_home, name="box"):
    box = tmp_path / name
    box_keys = enrolment.ensure_box_keys(box, f"id-{name}")
    db = hub_store.open_hub(hub_home)
    hub_store.enrol(db, enrolment.request(box_keys, name))
    db.close()
    return box, box_keys


def test_an_enrolled_box_node_is_admitted_and_its_key_file_is_private(tmp_path, hub_home):
    box, box_keys = enrolled_box(tmp_path, hub_home)
    path = district.admit(hub_home, node.request(box, box_keys.owner))
    assert path.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert (node.key_path(box).stat().st_mode & 0o777) == 0o600
    db = hub_store.open_hub(hub_home)
    logged = db.execute(
        "SELECT action FROM hub_audit WHERE box_id = ?", (box_keys.owner,)
    ).fetchall()
    db.close()
    assert "federation node admitted" in [row["action"] for row in logged]


def test_a_node_request_from_an_unknown_box_is_refused(tmp_path, hub_home):
    stranger = keys.generate("id-stranger")
    request = identity.node_request(stranger, identity.ensure_node_key(tmp_path / "n.key"))
    with pytest.raises(identity.IdentityError, match="not enrolled"):
        district.admit(hub_home, request)
    assert not list((hub_home / "federation" / "nodes").glob("*.pub"))


def test_a_box_id_that_is_not_a_plain_name_is_refused(tmp_path, hub_home):
    box_keys = keys.generate("../../outside")
    request = identity.node_request(box_keys, identity.ensure_node_key(tmp_path / "n.key"))
    with pytest.raises(identity.IdentityError, match="not a box id"):
        district.admit(hub_home, request)
    assert not (hub_home / "outside.pub").exists()


def test_a_tampered_node_request_is_refused(tmp_path, hub_home):
    box, box_keys = enrolled_box(tmp_path, hub_home)
    request = node.request(box, box_keys.owner)
    other = identity.public_openssh(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(identity.IdentityError, match="signature"):
        district.admit(hub_home, {**request, "node_key": other})


def test_a_node_key_on_another_curve_is_refused(tmp_path, hub_home):
    box, box_keys = enrolled_box(tmp_path, hub_home)
    body = {"format": identity.NODE_REQUEST_FORMAT, "box_id": box_keys.owner,
            "node_key": identity.public_openssh(ec.generate_private_key(ec.SECP256R1()))}  # fmt: skip
    request = {**body, "signature": identity._sign(box_keys, body)}
    with pytest.raises(identity.IdentityError, match="P-384"):
        district.admit(hub_home, request)


def test_a_box_trusts_only_an_invitation_its_district_signed(tmp_path, hub_home):
    box, _ = enrolled_box(tmp_path, hub_home)
    invitation_file = district.prepare(hub_home, "127.0.0.1:8000", ["127.0.0.1", "localhost"])
    invitation = json.loads(invitation_file.read_text())
    with pytest.raises(identity.IdentityError, match="No district key is pinned"):
        node.accept_invitation(box, invitation)
    enrolment.pin_district(box, json.loads((hub_home / "district.json").read_text()))
    forged = {**invitation, "superlink": "203.0.113.9:8000"}
    with pytest.raises(identity.IdentityError, match="signature"):
        node.accept_invitation(box, forged)
    assert not node.invitation_path(box).exists()
    assert node.accept_invitation(box, invitation)["superlink"] == "127.0.0.1:8000"
    assert "--root-certificates" in node.supernode_command(box, 9200)


def test_the_superlink_certificate_chains_to_the_district_ca_and_names_its_hosts(tmp_path):
    folder = tmp_path / "tls"
    identity.make_tls(folder, ["127.0.0.1", "hub.district.example"])
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["hub.district.example"]
    assert (folder / "server.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600


def test_the_district_app_has_the_same_configuration_as_the_repositorys_flower_app():
    import tomllib
    from pathlib import Path

    repo = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    written = tomllib.loads(district.APP_PYPROJECT)
    assert written["tool"]["flwr"] == repo["tool"]["flwr"]


# The paths boxes of the previous release import the Flower apps by: a district that upgrades
# first sends these in every run. Moving an app means keeping an alias module at its old
# path for one release (docs/federated.md, "App paths across upgrades").
PREVIOUS_RELEASE_COMPONENTS = {
    "serverapp": "federated.server_app:app",
    "clientapp": "federated.client_app:app",
}


def test_the_flower_app_paths_are_the_ones_boxes_of_the_last_release_have():
    import importlib
    import tomllib

    components = tomllib.loads(district.APP_PYPROJECT)["tool"]["flwr"]["app"]["components"]
    assert components == PREVIOUS_RELEASE_COMPONENTS
    for path in components.values():
        module, attribute = path.split(":")
        assert hasattr(importlib.import_module(module), attribute), path
