"""Hashing content against its digest: the one place that knows how ``sha256:<hex>`` is checked.

Digests reaching these functions were checked by ``proxy.oci.names.check_digest`` (or come from
verified documents); the algorithms are the two the distribution spec names, sha256 and sha512.
"""

from __future__ import annotations

from typing import Any

from proxy.oci.mediatypes import DOCKER_SCHEMA1_SIGNED

ALGORITHMS = ("sha256", "sha512")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``data`` (sha256 unless told otherwise)."""
    import hashlib  # here, not at the top: ``platproxy resolve`` starts without it (see bench/startup.py)

    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def matches(digest: str, data: bytes, media_type: str = "") -> bool:
    """Do ``data`` hash to ``digest``?  ``False`` for an algorithm platproxy does not verify.

    A signed schema 1 manifest's digest is that of its payload, not of its body (the body
    changes with every signing): ``media_type`` says when ``data`` is one.
    """
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ALGORITHMS:
        return False
    import hashlib

    return hashlib.new(algorithm, signed_content(data, media_type)).hexdigest() == expected


def manifest_digest(data: bytes, media_type: str) -> str:
    """The digest of a manifest as registries name it (schema 1: of the signed payload)."""
    return digest_of(signed_content(data, media_type))


def signed_content(data: bytes, media_type: str) -> bytes:
    """What a digest covers: the whole content, or a signed schema 1 manifest's payload."""
    if media_type != DOCKER_SCHEMA1_SIGNED:
        return data
    from proxy.oci.jws import InvalidSignature, payload

    try:
        return payload(data) or data
    except InvalidSignature:
        return data


class Hasher:
    """Incremental hashing of content that should come out as ``digest``."""

    def __init__(self, digest: str) -> None:
        import hashlib

        algorithm, _, self.expected = digest.partition(":")
        self._hash: Any = hashlib.new(algorithm)

    def update(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)

    def matches(self) -> bool:
        return bool(self._hash.hexdigest() == self.expected)
