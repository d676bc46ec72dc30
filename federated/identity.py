"""Who may take part in federated training, and how the parts know each other.

It reuses the sync enrolment (sync/enrolment.py) as the root of trust:

- A box makes a SuperNode key (ECDSA P-384 in OpenSSH format, which Flower's node
  authentication needs) and a *node request*: its box id and the node's public key,
  signed with the box's enrolled Ed25519 key. The district accepts it only from an
  enrolled box whose key verifies it, then registers the node key with its SuperLink;
  an unregistered node is refused by the SuperLink itself.
- The district makes a TLS certificate authority and a SuperLink certificate, and an
  *invitation*: the SuperLink's address and the CA certificate, signed with the
  district's key. A box accepts it only if the district key it pinned verifies it.

Every private key is written once, owner-readable only (sync/files.create_secret).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync.enrolment import EnrolmentError
from sync.files import canonical, create_secret
from sync.keys import PrivateKeys, PublicKeys

NODE_REQUEST_FORMAT = "schoolbox-federation-node/1"
INVITATION_FORMAT = "schoolbox-federation-invitation/1"
CERT_DAYS = 3650  # the district's CA and SuperLink certificate; rotate by re-inviting


class IdentityError(EnrolmentError):
    """A node request or invitation that is refused; the message says why."""


# -- the box's SuperNode key and its request to the district ------------------------------


def ensure_node_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The box's SuperNode key, made on first use (0600)."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        create_secret(path, pem)
    loaded = serialization.load_ssh_private_key(path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{path} is not a SuperNode key (ECDSA P-384).")
    return loaded


def public_openssh(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def node_request(box_keys: PrivateKeys, node_key: ec.EllipticCurvePrivateKey) -> dict:
    """What the box sends the district: its node key, signed with its enrolled key."""
    body = {"format": NODE_REQUEST_FORMAT, "box_id": box_keys.owner,
            "node_key": public_openssh(node_key)}  # fmt: skip
    return {**body, "signature": _sign(box_keys, body)}


def check_node_request(document: dict, enrolled: PublicKeys | None) -> str:
    """The node's OpenSSH public key, if an enrolled box signed this request."""
    if not isinstance(document, dict) or document.get("format") != NODE_REQUEST_FORMAT:
        raise IdentityError("This is not a Schoolbox federation node request.")
    if enrolled is None:
        raise IdentityError(
            f"Box {document.get('box_id')!r} is not enrolled at this hub: enrol it for sync first."
        )
    body = {k: document.get(k) for k in ("format", "box_id", "node_key")}
    _verify(enrolled, body, document.get("signature"), "the box's enrolled key")
    try:
        key = serialization.load_ssh_public_key(str(body["node_key"]).encode())
    except (ValueError, TypeError) as error:
        raise IdentityError("The node key in the request is not an OpenSSH public key.") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise IdentityError("The node key must be ECDSA P-384 (what Flower's node auth takes).")
    return str(body["node_key"])


# -- the district's TLS certificates and its invitation to boxes --------------------------


def make_tls(folder: Path, hosts: list[str]) -> None:
    """A CA and a SuperLink certificate for `hosts` (names or IP addresses), once."""
    if (folder / "ca.pem").exists():
        return
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Schoolbox district CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    names = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    server = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]),
            ca_name,
            server_key.public_key(),
            now,
        )  # fmt: skip
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in (("ca.key", ca_key), ("server.key", server_key)):
        create_secret(folder / name, _pem_key(key))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def invitation(district: PrivateKeys, address: str, ca_pem: str) -> dict:
    """What boxes pin to join: the SuperLink's address and CA, signed by the district."""
    body = {"format": INVITATION_FORMAT, "superlink": address, "ca_certificate": ca_pem}
    return {**body, "signature": _sign(district, body)}


def check_invitation(document: dict, district: PublicKeys | None) -> dict:
    """The invitation's body, if the district key this box pinned signed it."""
    if not isinstance(document, dict) or document.get("format") != INVITATION_FORMAT:
        raise IdentityError("This is not a Schoolbox federation invitation.")
    if district is None:
        raise IdentityError("No district key is pinned on this box yet: `schoolbox sync trust`.")
    body = {k: document.get(k) for k in ("format", "superlink", "ca_certificate")}
    _verify(district, body, document.get("signature"), "the district key this box trusts")
    try:
        x509.load_pem_x509_certificate(str(body["ca_certificate"]).encode())
    except ValueError as error:
        raise IdentityError("The invitation's CA certificate is not a PEM certificate.") from error
    return body


def _builder(subject, issuer, public_key, now) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _sign(keys: PrivateKeys, body: dict) -> str:
    return base64.b64encode(keys.signing.sign(canonical(body))).decode()


def _verify(keys: PublicKeys, body: dict, signature, whose: str) -> None:
    try:
        keys.signing.verify(base64.b64decode(str(signature), validate=True), canonical(body))
    except (InvalidSignature, ValueError) as error:
        raise IdentityError(f"The signature does not match {whose}.") from error


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise IdentityError(f"Cannot read {path}: {error}") from error
