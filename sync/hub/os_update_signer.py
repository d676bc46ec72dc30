"""The district's signer for OS update bundles: an ECDSA P-256 key and its certificate.

RAUC checks a bundle's CMS signature against X.509 certificates (its keyring), and RAUC
1.8 cannot sign with Ed25519 (OpenSSL's CMS_sign refuses it: tried), so OS updates have
a key of their own beside the district's Ed25519 keys, in the hub's home:

    <hub home>/os-update.key   the private key (PKCS#8 PEM, 0600)
    <hub home>/os-update.pem   its self-signed certificate, the keyring every image carries

The certificate is valid from 2000 to 9999 on purpose: a Raspberry Pi has no clock
battery, and a box that starts with a wrong date must still accept the district's
updates. Trust comes from the image (signed by the district), not from the dates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.files import create_secret, write_durably

NAME = "Schoolbox district OS updates"
VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)
VALID_UNTIL = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def key_path(hub_home: Path) -> Path:
    return hub_home / "os-update.key"


def certificate_path(hub_home: Path) -> Path:
    return hub_home / "os-update.pem"


def ensure(hub_home: Path) -> tuple[Path, Path]:
    """The signer's key and certificate, made on first use; returns their paths."""
    key_file, certificate_file = key_path(hub_home), certificate_path(hub_home)
    if not key_file.exists():
        new = ec.generate_private_key(ec.SECP256R1())
        pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        create_secret(key_file, pem)
    if not certificate_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an ECDSA key; move it away and run again.")
        pem = certificate_for(key).public_bytes(serialization.Encoding.PEM)
        write_durably(certificate_file, pem)
        certificate_file.chmod(0o644)  # public: it goes into every image
    return key_file, certificate_file


def certificate_for(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
