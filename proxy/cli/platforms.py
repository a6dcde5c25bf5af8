"""platproxy platforms IMAGE: list every entry of a live image's index with validation warnings.

IMAGE takes the usual forms (alpine, alpine:3.20, ghcr.io/o/r:tag, name@sha256:...).  Docker Hub
is reached at its API host; a loopback registry over plain HTTP, any other over HTTPS with
verification.  Nested indexes are listed below their entry, three levels at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from hostinfo import Platform, PlatformError, normalize
from hostinfo.cli import add_capability_arguments
from hostinfo.probe import host_profile
from hostinfo.validate import platform_warnings
from proxy.cli.common import UsageError, add_client_arguments, client_target, fail, image_ref, upstream_for
from proxy.errors import UpstreamError
from proxy.oci.descriptors import entry_kind
from proxy.oci.digests import manifest_digest
from proxy.oci.mediatypes import INDEX_TYPES, ClientCaps
from proxy.oci.names import ImageRef
from proxy.oci.resolve import InvalidIndex, parse_index, resolve_fetching
from proxy.pull.targets import Target
from proxy.registry.client import Upstream
from proxy.registry.source import UpstreamSource
from proxy.sizes import MAX_MANIFEST_SIZE

DESCRIPTION = (
    "List every entry of a live image's index (nested ones included) with its platform and kind, and warn "
    "about platform values that are not real ones."
)

MAX_NESTING = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="alpine, alpine:3.20, ghcr.io/o/r:tag, name@sha256:...")
    add_client_arguments(parser)
    add_capability_arguments(parser)  # --ia32, --aarch32, --emulation, --binfmt-dir: the entry this host gets
    parser.add_argument("--json", action="store_true", help="print the entries as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        target = None
        if args.user_agent or args.client_ip or args.config or args.emulation != "off" or args.binfmt_dir:
            host = host_profile("", (), args.ia32, args.aarch32, args.emulation, args.binfmt_dir)
            target = client_target(args, host)
        rows = asyncio.run(_platforms(image_ref(args.image), target, args.config))
    except UsageError as exc:
        return fail("platforms", str(exc))
    except (UpstreamError, InvalidIndex) as exc:
        return fail("platforms", f"{args.image}: {exc}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if target is not None:
        print(f"client: {'gets the index as published' if not target.resolves else 'resolved for ' + target.platform}"
              f" ({target.source}); its entry is marked *")  # fmt: skip
    print(f"{'PLATFORM':<34} {'KIND':<12} DIGEST")
    for row in rows:
        indent = "  " * row.get("depth", 0) + ("* " if row.get("chosen") else "")
        print(f"{indent + row['platform']:<34} {row['kind']:<12} {row['digest']}")
        for warning in row["warnings"]:
            print(f"{'':<34} {'warning':<12} {warning}")
    return 0


async def _platforms(ref: ImageRef, target: Target | None = None, config: Path | None = None) -> list[dict[str, Any]]:
    """The index's entries; with ``target``, the one a central mirror would give that client is
    marked ``chosen`` (nothing is, for a client that gets the index as published)."""
    up, repo = upstream_for(ref, config)
    rows: list[dict[str, Any]] = []
    try:
        data, media_type, header_digest = await up.get_manifest(repo, ref.reference, MAX_MANIFEST_SIZE)
        if media_type not in INDEX_TYPES:  # (a platproxy answers a tag with its chosen manifest: this)
            digest = header_digest or manifest_digest(data, media_type)
            return [{"platform": "(single manifest)", "digest": digest, "mediaType": media_type, "kind": "image",
                     "warnings": []}]  # fmt: skip
        await _walk(up, repo, parse_index(data), rows, depth=0)
        if target is not None and target.resolves:
            decision = await resolve_fetching(data, target.profile, ClientCaps(), UpstreamSource(up, repo))
            for row in rows:
                row["chosen"] = decision.chosen is not None and row["digest"] == decision.chosen.digest
    finally:
        await up.close()
    return rows


async def _walk(up: Upstream, repo: str, doc: dict[str, Any], rows: list[dict[str, Any]], depth: int) -> None:
    for entry in doc.get("manifests", []):
        if not isinstance(entry, dict):
            continue
        kind = entry_kind(entry)
        raw = entry.get("platform")
        shown, warnings = "(no platform)", []
        if isinstance(raw, dict):
            try:
                platform = Platform.from_descriptor(raw)
                shown = str(normalize(platform))
                warnings = platform_warnings(platform)
            except PlatformError as exc:
                shown, warnings = "(invalid)", [str(exc)]
        if kind == "attestation":
            warnings = []
        rows.append({"platform": shown, "digest": entry.get("digest", ""), "mediaType": entry.get("mediaType", ""),
                     "kind": kind, "depth": depth, "warnings": warnings})  # fmt: skip
        if kind == "index" and depth < MAX_NESTING:
            try:
                nested, _, _ = await up.get_manifest(repo, str(entry.get("digest")), MAX_MANIFEST_SIZE)
                await _walk(up, repo, parse_index(nested), rows, depth + 1)
            except (UpstreamError, InvalidIndex) as exc:
                rows[-1]["warnings"].append(f"nested index unreadable: {exc}")
