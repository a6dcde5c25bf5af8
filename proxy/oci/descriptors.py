"""Reading descriptors out of manifests and indexes: what a document refers to, and what kind
of entry each descriptor of an index is.  Pure functions over parsed JSON."""

from __future__ import annotations

from typing import Any

from proxy.oci import jsondoc
from proxy.oci.mediatypes import INDEX_TYPES, REFERENCE_TYPE_ANNOTATION


def references(document: bytes) -> set[str]:
    """Digests a manifest or index refers to (config, layers, child manifests; schema 1 blobs)."""
    try:
        doc = jsondoc.loads(document)
    except ValueError:
        return set()
    if not isinstance(doc, dict):
        return set()
    found = set()
    for key in ("layers", "manifests"):
        for d in doc.get(key) or []:
            if isinstance(d, dict) and isinstance(d.get("digest"), str):
                found.add(d["digest"])
    for layer in doc.get("fsLayers") or []:
        if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
            found.add(layer["blobSum"])
    config = doc.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        found.add(config["digest"])
    return found


def entry_kind(entry: dict[str, Any]) -> str:
    """``attestation``, ``artifact``, ``index`` or ``image``: what an index entry is, before its platform."""
    annotations = entry.get("annotations")
    if isinstance(annotations, dict) and annotations.get(REFERENCE_TYPE_ANNOTATION) == "attestation-manifest":
        return "attestation"
    if entry.get("artifactType"):
        return "artifact"
    return "index" if entry.get("mediaType") in INDEX_TYPES else "image"
