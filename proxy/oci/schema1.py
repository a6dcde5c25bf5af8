"""Docker schema 1 from schema 2, as Distribution 2.x built it (``manifest/schema1/config_builder.go``).

The engines that read nothing newer (Docker 1.6-1.9, ``Accept``-less clients) get what
Distribution gave them, so their graph stores see the same v1 IDs whichever registry they
pulled from:

- one history entry per config ``history`` entry, newest first; an ``empty_layer`` entry gets the
  gzipped empty tar (``EMPTY_TAR``) as its blob and ``throwaway``; the others take the next layer;
- ``v1 ID = sha256(blobsum hex + " " + parent ID)``; the top entry's ID also covers the whole
  config text, and its ``v1Compatibility`` is the config minus ``rootfs`` and ``history``, plus
  ``id``/``parent``/``throwaway``, keys sorted (a Go map);
- the payload is ``MarshalIndent(manifest, "", "   ")``: ``schemaVersion``, ``name``, ``tag``,
  ``architecture``, ``fsLayers``, ``history``.  Its sha256 is the manifest's digest.

Where a config has no usable history (missing, or its non-empty entries do not match the
layers, which Distribution refused or silently truncated), one entry per layer is synthesized.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.oci import gojson, jsondoc
from proxy.oci.convert import NotConvertible, parse_manifest
from proxy.oci.digests import digest_of

#: The gzipped empty tar (1024 NUL bytes) every throwaway entry names; served even where the
#: upstream lacks it, since Docker 1.6-1.9 fetch every layer whose v1 ID they do not have.
EMPTY_TAR = bytes.fromhex("1f8b080000096e8800ff621805a360148c5800080000ffff2eafb5ef00040000")
EMPTY_TAR_DIGEST = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


def build_payload(schema2: bytes, config: bytes, name: str, tag: str) -> bytes:
    """The unsigned schema 1 manifest (the JWS payload) for a schema 2 manifest and its config."""
    if not name:
        raise NotConvertible("schema 1 needs a repository name")  # an empty name crashes Docker 1.6-1.7
    layers = [str(d.get("digest", "")) for d in parse_manifest(schema2)["layers"] if isinstance(d, dict)]
    try:
        image = jsondoc.loads(config)
    except ValueError:
        raise NotConvertible("the image config is not JSON") from None
    if not isinstance(image, dict):
        raise NotConvertible("the image config is not a JSON object")
    history = _usable_history(image, len(layers))
    if not history:
        raise NotConvertible("the image has no layers and no history: schema 1 cannot describe it")
    blobsums: list[str] = []
    entries: list[str] = []
    parent = ""
    remaining = iter(layers)
    for i, entry in enumerate(history):
        empty = bool(entry.get("empty_layer"))
        blobsum = EMPTY_TAR_DIGEST if empty else next(remaining)
        hex_sum = blobsum.partition(":")[2]
        if i == len(history) - 1:
            top_id = digest_of(f"{hex_sum} {parent} ".encode() + config).partition(":")[2]
            entries.append(_top_entry(config, top_id, parent, empty))
        else:
            v1_id = digest_of(f"{hex_sum} {parent}".encode()).partition(":")[2]
            entries.append(_entry(entry, v1_id, parent, empty))
            parent = v1_id
        blobsums.append(blobsum)
    manifest = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": str(image.get("architecture") or ""),
        "fsLayers": [{"blobSum": b} for b in reversed(blobsums)],
        "history": [{"v1Compatibility": e} for e in reversed(entries)],
    }
    return gojson.dumps(manifest, indent="   ").encode()


def _usable_history(image: dict[str, Any], layer_count: int) -> list[dict[str, Any]]:
    """The config's history when it describes the layers; else one synthesized entry per layer."""
    history = image.get("history")
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) for h in history):
        history = []
    if history and sum(1 for h in history if not h.get("empty_layer")) == layer_count:
        return history
    return [{"created": image.get("created")} for _ in range(layer_count)]


def _entry(entry: dict[str, Any], v1_id: str, parent: str, empty: bool) -> str:
    """One ``v1Compatibility`` below the top, in the field order of Distribution's struct."""
    fields: dict[str, Any] = {"id": v1_id}
    if parent:
        fields["parent"] = parent
    if entry.get("comment"):
        fields["comment"] = str(entry["comment"])
    fields["created"] = gojson.RawJSON(gojson.string(gojson.time_text(entry.get("created"))))
    fields["container_config"] = {"Cmd": [str(entry.get("created_by") or "")]}
    if entry.get("author"):
        fields["author"] = str(entry["author"])
    if empty:
        fields["throwaway"] = True
    return gojson.dumps(fields)


def _top_entry(config: bytes, v1_id: str, parent: str, empty: bool) -> str:
    """The config minus ``rootfs``/``history``, plus ``id``/``parent``/``throwaway``, keys sorted."""
    raw = _raw_members(config.decode())
    raw.pop("rootfs", None)
    raw.pop("history", None)
    raw["id"] = gojson.string(v1_id)
    if parent:
        raw["parent"] = gojson.string(parent)
    if empty:
        raw["throwaway"] = "true"
    ordered = {k: gojson.RawJSON(gojson.compact(raw[k])) for k in sorted(raw, key=lambda k: k.encode())}
    return gojson.dumps(ordered)


def _raw_members(text: str) -> dict[str, str]:
    """The members of a JSON object as their original text (Go's ``map[string]*json.RawMessage``)."""
    decoder = json.JSONDecoder()
    members: dict[str, str] = {}
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        raise NotConvertible("the image config is not a JSON object")
    i = _skip(text, i + 1)
    while text[i : i + 1] != "}":
        key, i = decoder.raw_decode(text, i)
        i = _skip(text, _skip(text, i) + 1)  # past ':'
        _, end = decoder.raw_decode(text, i)
        members[str(key)] = text[i:end]
        i = _skip(text, end)
        if text[i : i + 1] == ",":
            i = _skip(text, i + 1)
    return members


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i
