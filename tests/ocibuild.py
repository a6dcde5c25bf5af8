"""Build real OCI / Docker images as bytes: layers, configs, manifests, indexes.

Everything is what a registry would serve: tar+gzip layers (or zstd frames) of real files,
image configs with ``architecture``/``os``/``variant``, manifests and indexes with the real
media types and annotations, and digests that are the sha256 of those exact bytes.  Used by the
resolver tests, the end-to-end tests (pushed into a real Distribution) and the benchmark.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.oci import mediatypes as mt

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str
    diff_id: str = ""
    """For a layer: the sha256 of its uncompressed tar (what image configs list in diff_ids)."""

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Image:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def gzip_layer(files: dict[str, bytes], media_type: str = LAYER_GZIP) -> Blob:
    tar = tar_bytes(files)
    return Blob(gzip.compress(tar, compresslevel=1, mtime=0), media_type, sha256(tar))


def zstd_frame(data: bytes) -> bytes:
    """A valid zstd frame holding ``data`` in raw (stored) blocks: no compressor needed."""
    out = bytearray(struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", len(data)))
    chunks = [data[i : i + 128 * 1024] for i in range(0, len(data), 128 * 1024)] or [b""]
    for n, chunk in enumerate(chunks):
        last = 1 if n == len(chunks) - 1 else 0
        out += (last | (len(chunk) << 3)).to_bytes(3, "little") + chunk
    return bytes(out)


def zstd_layer(files: dict[str, bytes]) -> Blob:
    tar = tar_bytes(files)
    return Blob(zstd_frame(tar), LAYER_ZSTD, sha256(tar))


def image(
    platform: dict[str, Any] | None,
    layers: list[Blob] | None = None,
    *,
    docker: bool = False,
    config_platform: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    label: str = "",
    history: list[Any] | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Image:
    """An image whose config names ``config_platform`` (default: the descriptor's platform).

    ``history`` replaces the one-entry default (``None`` in it: no ``history`` key at all);
    ``config_extra`` adds or replaces top-level config fields."""
    cp = config_platform if config_platform is not None else (platform or {})
    if layers is None:
        tag = label or "/".join(str(v) for v in (platform or cp).values())
        layers = [gzip_layer({"etc/platform": tag.encode()}, DOCKER_LAYER if docker else LAYER_GZIP)]
    config_doc = {
        **{k: v for k, v in cp.items() if k in ("architecture", "os", "variant", "os.version", "os.features")},
        "config": {"Cmd": ["/bin/sh"], "Labels": {"platform": label}},
        "rootfs": {
            "type": "layers",
            "diff_ids": [layer.diff_id or sha256(layer.data) for layer in layers],
        },
        "history": [{"created_by": "ocibuild"}] if history is None else history,
        **(config_extra or {}),
    }
    if config_doc["history"] == [None]:
        del config_doc["history"]
    config = Blob(_json(config_doc), mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest = Blob(_json(manifest_doc), manifest_doc["mediaType"])
    return Image(manifest, config, tuple(layers), platform, annotations or {})


def attestation(subject: Image) -> Image:
    """A BuildKit provenance attestation for ``subject``, as docker buildx pushes it."""
    statement = Blob(_json({"_type": "https://in-toto.io/Statement/v0.1", "subject": []}), IN_TOTO)
    config = Blob(
        _json({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}),
        mt.OCI_CONFIG,
    )
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [statement.descriptor(annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})],
    }
    return Image(
        Blob(_json(doc), mt.OCI_MANIFEST),
        config,
        (statement,),
        {"architecture": "unknown", "os": "unknown"},
        {"vnd.docker.reference.digest": subject.manifest.digest, "vnd.docker.reference.type": "attestation-manifest"},
    )


def index(entries: list[Image | tuple[Blob, dict[str, Any] | None, dict[str, str]]], *, docker: bool = False) -> Blob:
    """An image index (or Docker manifest list) over images or raw (blob, platform, annotations)."""
    manifests = []
    for e in entries:
        blob, platform, annotations = (e.manifest, e.platform, e.annotations) if isinstance(e, Image) else e
        d = blob.descriptor()
        if platform is not None:
            d["platform"] = platform
        if annotations:
            d["annotations"] = annotations
        manifests.append(d)
    media_type = mt.DOCKER_LIST if docker else mt.OCI_INDEX
    return Blob(_json({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}), media_type)


def write_layout(root: Path, top: Blob, blobs: list[Blob]) -> Path:
    """An OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``); returns blobs/."""
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for blob in [top, *blobs]:
        (root / "blobs" / "sha256" / blob.digest.split(":")[1]).write_bytes(blob.data)
    (root / "index.json").write_bytes(top.data)
    return root / "blobs"


def sha256(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(doc: Any) -> bytes:
    return json.dumps(doc, indent=3).encode()
