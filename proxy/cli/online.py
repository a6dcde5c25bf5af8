"""``platproxy platforms IMAGE`` and ``platproxy resolve IMAGE``: ask a live registry.

IMAGE takes the usual forms (``alpine``, ``alpine:3.20``, ``ghcr.io/o/r:tag``,
``name@sha256:...``).  Docker Hub is reached at registry-1.docker.io; a loopback registry over
plain HTTP, any other over HTTPS with verification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit

from hostinfo import HostProfile, Platform, PlatformError, normalize
from proxy.cli.resolve import UsageError, host_from_args, print_decision
from proxy.config import DOCKER_HUB_ALIASES, DOCKER_HUB_URL, LimitsConfig, UpstreamConfig, is_loopback
from proxy.errors import PlatproxyError, UpstreamError
from proxy.oci.mediatypes import INDEX_TYPES, REFERENCE_TYPE_ANNOTATION, ClientCaps
from proxy.oci.names import ImageRef
from proxy.oci.resolve import Decision, InvalidIndex, parse_index, resolve_fetching
from proxy.registry.client import Upstream, read_limited
from proxy.validate import platform_warnings

MAX_MANIFEST = 4 * 2**20


def upstream_for(ref: ImageRef) -> Upstream:
    if ref.registry in DOCKER_HUB_ALIASES:
        url = DOCKER_HUB_URL
    else:
        host = urlsplit(f"//{ref.registry}").hostname or ref.registry
        url = f"{'http' if is_loopback(host) else 'https'}://{ref.registry}"
    return Upstream(UpstreamConfig(name=ref.registry, url=url), LimitsConfig())


async def _fetcher(up: Upstream, repo: str) -> Any:
    async def fetch(digest: str, is_blob: bool) -> bytes | None:
        try:
            if is_blob:
                async with up.open_blob(repo, digest) as resp:
                    return await read_limited(resp, 16 * 2**20)
            return (await up.get_manifest(repo, digest, MAX_MANIFEST))[0]
        except UpstreamError:
            return None

    return fetch


async def _resolve(ref: ImageRef, host: HostProfile) -> Decision | tuple[str, str]:
    up = upstream_for(ref)
    try:
        data, media_type, _ = await up.get_manifest(ref.name, ref.reference, MAX_MANIFEST)
        if media_type not in INDEX_TYPES:
            return media_type, "not a list: a single manifest, pulled as it is"
        return await resolve_fetching(data, host, ClientCaps(), await _fetcher(up, ref.name))
    finally:
        await up.close()


async def _platforms(ref: ImageRef) -> list[dict[str, Any]]:
    up = upstream_for(ref)
    rows: list[dict[str, Any]] = []
    try:
        data, media_type, _ = await up.get_manifest(ref.name, ref.reference, MAX_MANIFEST)
        if media_type not in INDEX_TYPES:
            return [{"platform": "(single manifest)", "digest": "", "mediaType": media_type, "kind": "image",
                     "warnings": []}]  # fmt: skip
        await _walk(up, ref.name, parse_index(data), rows, depth=0)
    finally:
        await up.close()
    return rows


async def _walk(up: Upstream, repo: str, doc: dict[str, Any], rows: list[dict[str, Any]], depth: int) -> None:
    for entry in doc.get("manifests", []):
        if not isinstance(entry, dict):
            continue
        raw = entry.get("platform")
        annotations = entry.get("annotations") or {}
        kind = "index" if entry.get("mediaType") in INDEX_TYPES else "image"
        if annotations.get(REFERENCE_TYPE_ANNOTATION) == "attestation-manifest":
            kind = "attestation"
        elif entry.get("artifactType"):
            kind = "artifact"
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
        if kind == "index" and depth < 3:
            try:
                nested, _, _ = await up.get_manifest(repo, str(entry.get("digest")), MAX_MANIFEST)
                await _walk(up, repo, parse_index(nested), rows, depth + 1)
            except (UpstreamError, InvalidIndex) as exc:
                rows[-1]["warnings"].append(f"nested index unreadable: {exc}")


def add_platforms_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="alpine, alpine:3.20, ghcr.io/o/r:tag, name@sha256:...")
    parser.add_argument("--json", action="store_true")


def _ref(text: str) -> ImageRef:
    try:
        return ImageRef.parse(text)
    except PlatproxyError as exc:
        raise UsageError(f"bad image reference {text!r}: {exc.message}") from None


def run_platforms(args: argparse.Namespace) -> int:
    try:
        rows = asyncio.run(_platforms(_ref(args.image)))
    except UsageError as exc:
        print(f"platproxy platforms: {exc}", file=sys.stderr)
        return 2
    except (UpstreamError, InvalidIndex) as exc:
        print(f"platproxy platforms: {args.image}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'PLATFORM':<34} {'KIND':<12} DIGEST")
    for row in rows:
        indent = "  " * row.get("depth", 0)
        print(f"{indent + row['platform']:<34} {row['kind']:<12} {row['digest']}")
        for warning in row["warnings"]:
            print(f"{'':<34} {'warning':<12} {warning}")
    return 0


def run_resolve_image(args: argparse.Namespace) -> int:
    try:
        host = host_from_args(args)
        outcome = asyncio.run(_resolve(_ref(args.image), host))
    except UsageError as exc:
        print(f"platproxy resolve: {exc}", file=sys.stderr)
        return 2
    except (UpstreamError, InvalidIndex) as exc:
        print(f"platproxy resolve: {args.image}: {exc}", file=sys.stderr)
        return 2
    if isinstance(outcome, tuple):
        print(json.dumps({"chosen": None, "single": outcome[0], "note": outcome[1]}) if args.json else outcome[1])
        return 0
    print_decision(outcome, args.json)
    return 0 if outcome.chosen else 1
