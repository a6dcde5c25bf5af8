"""The node check's canary: proof that a runtime's pulls really go through the mirror.

``platproxy node check`` asks the mirror for a one-time nonce, makes the node's runtime pull
``<registry>/platproxy-check/<nonce>:latest`` by its normal path, then asks the mirror what it
saw for that nonce.  The mirror answers that name itself, for any registry a runtime is pointed
at: a tiny multi-platform image built here (``build``, pure: an index of one small image per
common platform, each with one empty layer and a config labelled with the nonce, so a runtime
must fetch at least the config even when it holds the layer), resolved for the requesting
client exactly as a real tag would be.  Nothing about it touches the cache or an upstream.

A nonce is single-use (reading what was seen for it ends it) and expires after ``TTL`` seconds;
an unknown or expired nonce's name is a plain 404, never forwarded.  At most ``MAX_CHECKS`` are
open at once (the oldest go first), each with at most ``MAX_SIGHTINGS`` requests kept.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import secrets
import tarfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from proxy.oci.mediatypes import DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST

REPOSITORY = "platproxy-check"
"""The reserved repository: ``…/platproxy-check/<nonce>`` under any registry or namespace."""
NONCE = re.compile(r"[0-9a-f]{32}")
PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le",
             "linux/s390x", "linux/riscv64")  # fmt: skip
TTL = 600.0
MAX_CHECKS = 10_000
MAX_SIGHTINGS = 64
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def nonce_of(name: str) -> str | None:
    """The nonce when ``name`` is the canary's (``[anything/]platproxy-check/<nonce>``), else None."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-2] == REPOSITORY and NONCE.fullmatch(parts[-1]):
        return parts[-1]
    return None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@cache
def _layer() -> tuple[bytes, str]:
    """An empty tar, gzipped reproducibly: the layer bytes and the tar's digest (its diff id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT):
        pass
    tar = raw.getvalue()
    return gzip.compress(tar, mtime=0), _digest(tar)


@dataclass(frozen=True)
class CanaryImage:
    """The canary for one nonce: the index, each child manifest, the blobs, by digest."""

    index: bytes
    manifests: dict[str, bytes]
    blobs: dict[str, bytes]

    @property
    def index_digest(self) -> str:
        return _digest(self.index)


def build(nonce: str, extra: str = "") -> CanaryImage:
    """Pure: the canary image for ``nonce``; ``extra`` adds a platform the common set lacks (the
    requesting node's own, such as ``linux/amd64/v3`` or ``linux/mips64le``)."""
    layer, diff_id = _layer()
    created = "1970-01-01T00:00:00Z"
    layer_descriptor = {"mediaType": LAYER_TYPE, "size": len(layer), "digest": _digest(layer)}
    platforms = list(PLATFORMS) + ([extra] if extra and extra not in PLATFORMS else [])
    manifests: dict[str, bytes] = {}
    blobs: dict[str, bytes] = {_digest(layer): layer}
    entries = []
    for spec in platforms:
        os_name, arch, *rest = spec.split("/")
        platform: dict[str, Any] = {"os": os_name, "architecture": arch, **({"variant": rest[0]} if rest else {})}
        config = _json({**platform, "config": {"Labels": {"org.platproxy.check": nonce}},
                        "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "created": created,
                        "history": [{"created": created, "created_by": "platproxy node check"}]})  # fmt: skip
        blobs[_digest(config)] = config
        manifest = _json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                          "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": _digest(config)},
                          "layers": [layer_descriptor]})  # fmt: skip
        manifests[_digest(manifest)] = manifest
        entries.append({"mediaType": DOCKER_MANIFEST, "size": len(manifest), "digest": _digest(manifest),
                        "platform": platform})  # fmt: skip
    index = _json({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries})
    return CanaryImage(index, manifests, blobs)


@dataclass(frozen=True)
class Sighting:
    """One request the mirror answered for a nonce."""

    time: float
    address: str
    user_agent: str
    declared: str
    """The node header's value, if any."""
    target: str
    """Whom it was resolved for: ``linux/arm/v7 (node)``, ``index (unknown client)``."""
    kind: str
    reference: str
    status: int


@dataclass
class Check:
    nonce: str
    asker: str
    """The address that asked for the nonce: the one place (with loopback and authenticated
    users) that may read what was seen."""
    created: float
    images: dict[str, CanaryImage] = field(default_factory=dict)
    sightings: list[Sighting] = field(default_factory=list)

    def image(self, extra: str) -> CanaryImage:
        if extra not in self.images:
            self.images[extra] = build(self.nonce, extra)
        return self.images[extra]

    def blob(self, digest: str) -> bytes | None:
        return next((i.blobs[digest] for i in self.images.values() if digest in i.blobs), None)

    def manifest(self, digest: str) -> bytes | None:
        for image in self.images.values():
            if digest == image.index_digest:
                return image.index
            if digest in image.manifests:
                return image.manifests[digest]
        return None

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "created": self.created,
                "sightings": [vars(s) for s in self.sightings]}  # fmt: skip


class Checks:
    """The open checks, by nonce."""

    def __init__(self, ttl: float = TTL, limit: int = MAX_CHECKS, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._open: OrderedDict[str, Check] = OrderedDict()

    def issue(self, asker: str) -> Check:
        self._expire()
        while len(self._open) >= self.limit:
            self._open.popitem(last=False)
        check = Check(secrets.token_hex(16), asker, self.clock())
        self._open[check.nonce] = check
        return check

    def get(self, nonce: str) -> Check | None:
        self._expire()
        return self._open.get(nonce)

    def seen(self, check: Check, sighting: Sighting) -> None:
        if len(check.sightings) < MAX_SIGHTINGS:
            check.sightings.append(sighting)

    def take(self, nonce: str) -> Check | None:
        """What was seen for ``nonce``, once: the check ends here."""
        self._expire()
        return self._open.pop(nonce, None)

    def _expire(self) -> None:
        horizon = self.clock() - self.ttl
        while self._open:
            oldest = next(iter(self._open.values()))
            if oldest.created >= horizon:
                break
            self._open.popitem(last=False)
