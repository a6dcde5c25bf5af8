"""What form of a manifest a client gets for a tag, and OCI -> Docker schema 2 conversion.

``plan`` is the decision table (pure): a client gets the chosen manifest as it is when it reads
that type; an OCI manifest becomes Docker schema 2 for a client that reads schema 2 but not OCI
(Docker 1.10-18.03, 19.03.0-19.03.4, schema-2-only tools); anything becomes signed schema 1 for
a client that reads neither (Docker 1.6-1.9, ``Accept``-less clients).  Docker schema 2 is never
turned into OCI (an OCI-only tool gets it as is, as Distribution serves it), and schema 1 from
the upstream passes through untouched.

``to_schema2`` rewrites media types only (image-spec's compatibility matrix; containers/image
does the same): the config blob stays byte-identical, so the engine's image ID is the original
one, layers keep their digests, OCI-only fields (annotations, subject, artifactType, data) go.
An artifact, encrypted layers or zstd layers have no Docker form: ``NotConvertible`` says why.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from proxy.oci import jsondoc
from proxy.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    OCI_MANIFEST,
    ClientCaps,
)

DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_FOREIGN_TAR = "application/vnd.docker.image.rootfs.foreign.diff.tar"

#: OCI layer media type -> its Docker twin (image-spec media-types.md, compatibility matrix).
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar+gzip": DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar": DOCKER_LAYER_TAR,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": DOCKER_FOREIGN_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": DOCKER_FOREIGN_TAR,
    DOCKER_LAYER_GZIP: DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR: DOCKER_LAYER_TAR,
    DOCKER_FOREIGN_GZIP: DOCKER_FOREIGN_GZIP,
    DOCKER_FOREIGN_TAR: DOCKER_FOREIGN_TAR,
}
FOREIGN_TYPES = frozenset({DOCKER_FOREIGN_GZIP, DOCKER_FOREIGN_TAR})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})


class Form(enum.Enum):
    AS_IS = "as-is"
    SCHEMA2 = "schema2"
    SCHEMA1 = "schema1"


class NotConvertible(ValueError):
    """This manifest has no form the client can read; the message says what it is and why."""


def plan(media_type: str, client: ClientCaps) -> Form:
    """The form of a ``media_type`` manifest this client gets for a tag."""
    if media_type in SCHEMA1_TYPES or client.accepts_type(media_type):
        return Form.AS_IS
    if media_type == DOCKER_MANIFEST:
        return Form.AS_IS if client.accepts_type(OCI_MANIFEST) else Form.SCHEMA1
    if media_type == OCI_MANIFEST:
        return Form.SCHEMA2 if client.accepts_type(DOCKER_MANIFEST) else Form.SCHEMA1
    return Form.AS_IS  # an index (resolved children only reach here) or a type nobody converts


def parse_manifest(data: bytes) -> dict[str, Any]:
    """An image manifest as JSON, or ``NotConvertible`` if it is not one."""
    try:
        doc = jsondoc.loads(data)
    except ValueError:
        raise NotConvertible("the manifest is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
        raise NotConvertible("the manifest has no config and layers: not an image manifest")
    return doc


def layer_problem(doc: dict[str, Any], *, zstd_ok: bool, encrypted_ok: bool = False) -> str:
    """Why this client cannot unpack the manifest's layers (empty: it can)."""
    for layer in doc.get("layers") or []:
        media_type = str(layer.get("mediaType", "")) if isinstance(layer, dict) else ""
        if not encrypted_ok and "+encrypted" in media_type:
            return f"layer {layer.get('digest')} is encrypted ({media_type})"
        if not zstd_ok and "zstd" in media_type:
            return (
                f"layer {layer.get('digest')} is zstd-compressed ({media_type}), which this client cannot unpack "
                "(Docker before 23.0, containerd before 1.5) and the index offers no gzip twin"
            )
    return ""


def to_schema2(data: bytes) -> bytes:
    """The Docker schema 2 form of an OCI image manifest: media types rewritten, nothing else."""
    doc = parse_manifest(data)
    if doc.get("artifactType"):
        raise NotConvertible(f"this is an OCI artifact ({doc['artifactType']}), not a container image")
    config = doc["config"]
    config_type = config.get("mediaType")
    if config_type not in (OCI_CONFIG, DOCKER_CONFIG):
        raise NotConvertible(f"this is an OCI artifact (config {config_type}), not a container image")
    problem = layer_problem(doc, zstd_ok=False)
    if problem:
        raise NotConvertible(f"{problem}; Docker schema 2 has no media type for it")
    layers = []
    for layer in doc["layers"]:
        docker_type = LAYER_TYPES.get(str(layer.get("mediaType", "")))
        if docker_type is None:
            raise NotConvertible(f"layer {layer.get('digest')} has media type {layer.get('mediaType')!r}, "
                                 "which has no Docker schema 2 equivalent")  # fmt: skip
        urls = layer.get("urls") if docker_type in FOREIGN_TYPES else None
        layers.append(_descriptor(docker_type, layer, urls))
    converted = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": _descriptor(DOCKER_CONFIG, config, None),
        "layers": layers,
    }
    return json.dumps(converted, indent=3, ensure_ascii=False).encode()


def _descriptor(media_type: str, source: dict[str, Any], urls: Any) -> dict[str, Any]:
    """Docker's descriptor layout: mediaType, size, digest (and urls for foreign layers)."""
    size, digest = source.get("size"), source.get("digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(digest, str):
        raise NotConvertible(f"a descriptor has no valid size and digest: {json.dumps(source)[:200]}")
    out = {"mediaType": media_type, "size": size, "digest": digest}
    if isinstance(urls, list) and urls:
        out["urls"] = urls
    return out
