"""What a bundle keeps of one image, pure: given the index and the children wanted (the ones the
fleet was served, or those the resolver picks for each listed platform), the entries kept, the
attestation manifests that refer to a kept child, and what was left out.  The index itself is
kept byte for byte: its digest, the one pinned in deployments and signatures, does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.oci.descriptors import entry_kind
from proxy.oci.mediatypes import REFERENCE_TYPE_ANNOTATION
from proxy.oci.resolve import parse_index

REFERENCE_DIGEST = "vnd.docker.reference.digest"


@dataclass(frozen=True)
class Entry:
    digest: str
    media_type: str
    size: int
    platform: str


@dataclass
class Selection:
    kept: list[Entry] = field(default_factory=list)
    attestations: list[Entry] = field(default_factory=list)
    left_out: list[Entry] = field(default_factory=list)

    @property
    def platforms(self) -> list[str]:
        return [e.platform for e in self.kept]


def platform_of(entry: dict[str, Any]) -> str:
    p = entry.get("platform")
    if not isinstance(p, dict):
        return ""
    return "/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k))


def entries(index: bytes) -> list[dict[str, Any]]:
    found = parse_index(index).get("manifests", [])
    return [e for e in found if isinstance(e, dict) and isinstance(e.get("digest"), str)]


def select(index: bytes, wanted: set[str] | None) -> Selection:
    """``wanted``: the child digests to keep (``None``: every child)."""
    chosen = Selection()
    kept: set[str] = set()
    for e in entries(index):
        if entry_kind(e) == "attestation":
            continue
        entry = Entry(e["digest"], str(e.get("mediaType", "")), int(e.get("size", 0)), platform_of(e))
        if wanted is None or entry.digest in wanted:
            chosen.kept.append(entry)
            kept.add(entry.digest)
        else:
            chosen.left_out.append(entry)
    for e in entries(index):
        found = e.get("annotations")
        annotations: dict[str, Any] = found if isinstance(found, dict) else {}
        if entry_kind(e) != "attestation" or annotations.get(REFERENCE_TYPE_ANNOTATION) != "attestation-manifest":
            continue
        entry = Entry(e["digest"], str(e.get("mediaType", "")), int(e.get("size", 0)), "attestation")
        (chosen.attestations if annotations.get(REFERENCE_DIGEST) in kept else chosen.left_out).append(entry)
    return chosen
