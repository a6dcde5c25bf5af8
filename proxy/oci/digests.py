"""Hashing content against its digest: the one place that knows how ``sha256:<hex>`` is checked.

Digests reaching these functions were checked by ``proxy.oci.names.check_digest`` (or come from
verified documents); the algorithms are the two the distribution spec names, sha256 and sha512.
"""

from __future__ import annotations

from typing import Any

ALGORITHMS = ("sha256", "sha512")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``data`` (sha256 unless told otherwise)."""
    import hashlib  # here, not at the top: ``platproxy resolve`` starts without it (see bench/startup.py)

    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def matches(digest: str, data: bytes) -> bool:
    """Do ``data`` hash to ``digest``?  ``False`` for an algorithm platproxy does not verify."""
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ALGORITHMS:
        return False
    import hashlib

    return hashlib.new(algorithm, data).hexdigest() == expected


class Hasher:
    """Incremental hashing of content that should come out as ``digest``."""

    def __init__(self, digest: str) -> None:
        import hashlib

        algorithm, _, self.expected = digest.partition(":")
        self._hash: Any = hashlib.new(algorithm)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def matches(self) -> bool:
        return bool(self._hash.hexdigest() == self.expected)
