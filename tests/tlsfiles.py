"""A test certificate authority: a CA, server certificates for 127.0.0.1 / localhost and the
name the Docker test uses, and client certificates, written as PEM files (made with
``cryptography``, the library platproxy's TLS checks use)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAMES = ("localhost", "platproxy.test")
NOW = datetime.datetime.now(datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip


@dataclass
class Pair:
    cert: Path
    key: Path


class TestCA:
    __test__ = False  # not a test class

    def __init__(self, directory: Path, common: str = "platproxy test CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(common)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.path = directory / "ca.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, *, server: bool = True, days: float = 30, serial: int | None = None) -> Pair:
        """A leaf certificate (chain: leaf then CA) and its key as ``<stem>.crt`` / ``<stem>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(self.name).public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=2)).not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )  # fmt: skip
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in NAMES]
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = Pair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.path.read_bytes())
        _write_key(key, pair.key)
        return pair

    def client_context(self, client: Pair | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.path))
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        return ctx


def serial_of(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number
