"""Schema 1 signatures: libtrust's JSON Web Signature, as Docker 1.6-1.9 verify it.

A signed schema 1 manifest is its payload with a ``signatures`` member spliced in before the
final ``}``; each signature's protected header records where (``formatLength``) and what was
cut (``formatTail``), so the payload, whose sha256 is the manifest's digest, can be rebuilt
from the body (``payload``).  Signing (``sign``) is ES256 over ``protected + "." + payload``
with a P-256 key whose JWK carries libtrust's ``kid`` (the first 240 bits of the sha256 of the
DER public key, base32, in groups of four), which libtrust checks against the key.

Sources: libtrust ``jsonsign.go``, ``ec_key.go``, ``util.go`` (vendored by moby v1.10.0);
distribution ``manifest/schema1/sign.go``.  ``cryptography`` is imported only to sign or verify.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Any

from proxy.oci import gojson, jsondoc

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

SIGNATURES_INDENT = "   "


class InvalidSignature(ValueError):
    """A schema 1 body whose signatures cannot be read or do not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def payload(body: bytes) -> bytes | None:
    """The payload a schema 1 JWS body signs (its sha256 is the digest); ``None``: no signatures."""
    try:
        doc = jsondoc.loads(body)
        signatures = doc.get("signatures") if isinstance(doc, dict) else None
        if not signatures:
            return None
        protected = jsondoc.loads(b64url_decode(signatures[0]["protected"]))
        length, tail = int(protected["formatLength"]), b64url_decode(protected["formatTail"])
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidSignature(f"unreadable schema 1 signature: {exc}") from None
    if not 0 < length <= len(body):
        raise InvalidSignature("schema 1 signature's formatLength is out of range")
    return body[:length] + tail


def key_id(public_key: EllipticCurvePublicKey) -> str:
    """libtrust's key ID: base32 of the first 30 bytes of sha256(DER public key), 12 groups of 4."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def jwk(public_key: EllipticCurvePublicKey) -> dict[str, str]:
    """The public key as libtrust writes it (keys sorted: crv, kid, kty, x, y)."""
    numbers = public_key.public_numbers()
    return {"crv": "P-256", "kid": key_id(public_key), "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}  # fmt: skip


def sign(content: bytes, key: EllipticCurvePrivateKey, now: datetime) -> bytes:
    """The signed body of a schema 1 payload: ``payload[:formatLength]`` + signatures + ``}``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    close = len(content.rstrip())
    if not content[:close].endswith(b"}"):
        raise ValueError("a schema 1 payload must be a JSON object")
    length = len(content[: close - 1].rstrip())
    protected_doc = {"formatLength": length, "formatTail": b64url(content[length:]),
                     "time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    protected = b64url(gojson.dumps(protected_doc).encode())
    signing_input = f"{protected}.{b64url(content)}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = {
        "header": {"jwk": jwk(key.public_key()), "alg": "ES256"},
        "signature": b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
        "protected": protected,
    }
    marshalled = gojson.dumps([signature], indent=SIGNATURES_INDENT, prefix=SIGNATURES_INDENT)
    return content[:length] + f',\n{SIGNATURES_INDENT}"signatures": {marshalled}\n}}'.encode()


def verify(body: bytes) -> list[str]:
    """Check every signature of a schema 1 body; returns the signers' key IDs."""
    from cryptography.exceptions import InvalidSignature as BadSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    content = payload(body)
    if content is None:
        raise InvalidSignature("no signatures")
    signers = []
    for sig in jsondoc.loads(body)["signatures"]:
        key_doc: dict[str, Any] = sig["header"]["jwk"]
        x, y = (int.from_bytes(b64url_decode(key_doc[c]), "big") for c in ("x", "y"))
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        if key_doc.get("kid") and key_doc["kid"] != key_id(public):
            raise InvalidSignature("the JWK's kid does not match its key")
        raw = b64url_decode(sig["signature"])
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, f"{sig['protected']}.{b64url(content)}".encode(), ec.ECDSA(hashes.SHA256()))
        except BadSignature:
            raise InvalidSignature("a signature does not verify") from None
        signers.append(key_id(public))
    return signers
