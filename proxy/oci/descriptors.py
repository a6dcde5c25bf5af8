"""Reading descriptors out of manifests and indexes: what a document refers to, and what kind
of entry each descriptor of an index is.  Pure functions over parsed JSON."""

from __future__ import annotations

from typing import Any

from proxy.oci import jsondoc
from proxy.oci.mediatypes import INDEX_TYPES, REFERENCE_TYPE_ANNOTATION


def references(document: bytes) -> set[str]:
    """Digests a manifest or index refers to (config, layers, child manifests; schema 1 blobs)."""
    return set(referenced(document))


def referenced(document: bytes) -> dict[str, int | None]:
    """What a manifest or index refers to, each digest with the size its descriptor gives
    (``None`` where it gives none: schema 1 names blobs without sizes)."""
    try:
        doc = jsondoc.loads(document)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    found: dict[str, int | None] = {}
    descriptors = [d for key in ("layers", "manifests") if isinstance(doc.get(key), list) for d in doc[key]]
    if isinstance(doc.get("config"), dict):
        descriptors.append(doc["config"])
    for d in descriptors:
        if isinstance(d, dict) and isinstance(d.get("digest"), str):
            size = d.get("size")
            found[d["digest"]] = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    for layer in doc["fsLayers"] if isinstance(doc.get("fsLayers"), list) else []:
        if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
            found.setdefault(layer["blobSum"], None)
    return found


def entry_kind(entry: dict[str, Any]) -> str:
    """``attestation``, ``artifact``, ``index`` or ``image``: what an index entry is, before its platform."""
    annotations = entry.get("annotations")
    if isinstance(annotations, dict) and annotations.get(REFERENCE_TYPE_ANNOTATION) == "attestation-manifest":
        return "attestation"
    if entry.get("artifactType"):
        return "artifact"
    return "index" if entry.get("mediaType") in INDEX_TYPES else "image"
