"""The development PKI: one CA and one certificate per service, under the data directory.

`limelight up` (and tests) call `ensure_dev_pki(data_root, services)` before starting
services. Files live in `<data>/pki/`:

    ca.pem, ca-key.pem                  the development CA (key mode 0600)
    services/<name>.pem, <name>-key.pem one leaf per service (key mode 0600)

A service certificate names its service identity as a SAN URI,
`spiffe://limelight/services/<name>` (`service_identity_uri`), and carries the DNS names
`localhost` and `<name>` and the loopback addresses, so a client dialling 127.0.0.1 or the
service's name can verify it. The same leaf is the service's server certificate and, for
mutual TLS, its client certificate.

A real deployment puts certificates from its own CA at the same paths (or points
`LIMELIGHT_PKI_DIR` elsewhere); only the SAN URI rule above must hold. Nothing here runs
at import time.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libs.clock import utc_now
from libs.kit.config import SERVICES
from libs.storage.paths import data_dir

SPIFFE_TRUST_DOMAIN = "spiffe://limelight"
PKI_DIR_ENV = "LIMELIGHT_PKI_DIR"

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=90)
# A leaf this close to expiry is issued again on the next `ensure_dev_pki`.
LEAF_RENEWAL = dt.timedelta(days=7)


def service_identity_uri(service: str) -> str:
    return f"{SPIFFE_TRUST_DOMAIN}/services/{service}"


def service_from_identity_uri(uri: str) -> str:
    """The service a SAN URI names, or '' when it is not a Limelight service identity."""
    prefix = f"{SPIFFE_TRUST_DOMAIN}/services/"
    name = uri.removeprefix(prefix) if uri.startswith(prefix) else ""
    return name if name and "/" not in name else ""


@dataclass(frozen=True)
class PkiFiles:
    """Where the CA and each service's certificate and key live."""

    root: Path

    @property
    def ca_certificate(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    def certificate(self, service: str) -> Path:
        return self.root / "services" / f"{service}.pem"

    def key(self, service: str) -> Path:
        return self.root / "services" / f"{service}-key.pem"


def pki_files(data_root: Path | None = None) -> PkiFiles:
    configured = os.environ.get(PKI_DIR_ENV)
    return PkiFiles(Path(configured) if configured else (data_root or data_dir()) / "pki")


def ensure_dev_pki(data_root: Path, services: Iterable[str] = SERVICES, *,
                   now: dt.datetime | None = None) -> PkiFiles:
    """Create the development CA and each service's certificate where missing or expiring.

    `limelight up` calls `ensure_dev_pki(data_root)` (every service) before it starts them.

    Idempotent: an existing CA is kept, and so is a leaf the CA signed that is valid for
    longer than `LEAF_RENEWAL`. Keys are written with mode 0600 inside a 0700 directory.
    """
    issued_at = now or utc_now()
    files = pki_files(data_root)
    files.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (files.root / "services").mkdir(mode=0o700, exist_ok=True)
    # Two processes making the PKI at once must not end with a CA key from one and a CA
    # certificate from the other.
    with open(files.root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ca_key, ca_certificate = _load_or_create_ca(files, issued_at)
        for service in services:
            if not _leaf_is_current(files, service, ca_certificate, issued_at):
                _issue_leaf(files, service, ca_key, ca_certificate, issued_at)
    return files


def _load_or_create_ca(files: PkiFiles, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if files.ca_certificate.exists() and files.ca_key.exists():
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.ca_key} does not hold an EC private key")
        return key, x509.load_pem_x509_certificate(files.ca_certificate.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Limelight development CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private_key(files.ca_key, key)
    _write_public(files.ca_certificate, certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate


def _leaf_is_current(files: PkiFiles, service: str, ca_certificate: x509.Certificate, now: dt.datetime) -> bool:
    if not (files.certificate(service).exists() and files.key(service).exists()):
        return False
    leaf = x509.load_pem_x509_certificate(files.certificate(service).read_bytes())
    try:
        leaf.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return leaf.not_valid_after_utc - now > LEAF_RENEWAL


def _issue_leaf(files: PkiFiles, service: str, ca_key: ec.EllipticCurvePrivateKey,
                ca_certificate: x509.Certificate, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(service_identity_uri(service)),
        x509.DNSName("localhost"),
        x509.DNSName(service),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"services/{service}")]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private_key(files.key(service), key)
    _write_public(files.certificate(service), certificate.public_bytes(serialization.Encoding.PEM))


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _replace(path, pem, 0o600)


def _write_public(path: Path, pem: bytes) -> None:
    _replace(path, pem, 0o644)


def _replace(path: Path, content: bytes, mode: int) -> None:
    """Write via a private temporary file and rename, so a reader never sees half a PEM.

    The file is always new, so it gets `mode` cut by the umask: certificates are 0644 for
    an ordinary umask and owner-only under `limelight up` (umask 077); keys never more
    than 0600.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
