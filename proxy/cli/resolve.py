"""platproxy resolve: show the decision for an index file (offline) or a live image.

Exit codes: 0 a manifest is chosen; 1 nothing fits (the verdict table is still printed);
2 bad input (unreadable or invalid JSON, not an index, a bad platform string, a registry that
cannot be asked), one line.  The offline form loads no HTTP code at all.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from hostinfo import HostProfile
from proxy.cli.common import (
    UsageError,
    add_client_arguments,
    add_host_arguments,
    client_target,
    fail,
    host_from_args,
    image_ref,
    upstream_for,
)
from proxy.errors import UpstreamError
from proxy.oci.mediatypes import INDEX_TYPES, ClientCaps
from proxy.oci.names import ImageRef
from proxy.oci.resolve import UNAVAILABLE, Decision, InvalidIndex, resolve_fetching, resolve_loading
from proxy.sizes import MAX_MANIFEST_SIZE

DESCRIPTION = (
    "Show which entry of a manifest list or image index this host (or --platform) gets, every candidate's "
    "rank and every rejected entry's reason. IMAGE asks a live registry; --index FILE works offline. Exit "
    "0: chosen; 1: nothing fits; 2: bad input."
)

_DIGEST = re.compile(r"^(sha256|sha512):([a-f0-9]{64}|[a-f0-9]{128})$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", help="a live image to resolve, e.g. alpine:3.20 (instead of --index)")
    parser.add_argument("--index", type=Path, help="a manifest list / image index JSON file (offline)")
    parser.add_argument(
        "--blobs", type=Path, help="an OCI layout's blobs/ folder (DIR/sha256/<hex>), for entries without platforms"
    )
    add_host_arguments(parser)
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")


def run(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.index is None):
        return fail("resolve", "give either IMAGE or --index FILE")
    try:
        host = host_from_args(args)
        if args.user_agent or args.client_ip:
            target = client_target(args, host)
            if not target.resolves:
                why = (
                    "a node nothing places: it chooses"
                    if target.source == "unknown client"
                    else "a tool that works on the index"
                )
                note = f"client: gets the index as published ({target.source}: {why})"
                print(json.dumps({"chosen": None, "index": True, "note": note}) if args.json else note)
                return 0
            if not args.json:
                print(f"client: resolved for {target.platform} ({target.source})")
            host = target.profile
        if args.index is not None:
            decision: Decision | tuple[str, str] = _offline(args.index, args.blobs, host)
        else:
            import asyncio  # the online form only: the offline one starts faster without it

            decision = asyncio.run(_online(image_ref(args.image), host, args.config))
    except UsageError as exc:
        return fail("resolve", str(exc))
    except (UpstreamError, InvalidIndex) as exc:
        return fail("resolve", f"{args.index or args.image}: {exc}")
    if isinstance(decision, tuple):
        print(json.dumps({"chosen": None, "single": decision[0], "note": decision[1]}) if args.json else decision[1])
        return 0
    print_decision(decision, args.json)
    return 0 if decision.chosen else 1


def _offline(index: Path, blobs: Path | None, host: HostProfile) -> Decision:
    try:
        data = index.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {index}: {exc.strerror or exc}") from None
    if blobs is not None and not blobs.is_dir():
        raise UsageError(f"--blobs {blobs} is not a folder")
    decision = resolve_loading(data, host, ClientCaps(), layout_loader(blobs))
    missing = [r for r in decision.rejected if r.reason.endswith(UNAVAILABLE)]
    if blobs is None and missing and decision.chosen is None:
        entries = "1 entry needs" if len(missing) == 1 else f"{len(missing)} entries need"
        raise UsageError(f"{index}: {entries} the layout's content (a nested index, or an entry without a "
                         "platform): pass --blobs DIR (the blobs/ folder beside index.json)")  # fmt: skip
    return decision


async def _online(ref: ImageRef, host: HostProfile, config: Path | None = None) -> Decision | tuple[str, str]:
    from proxy.registry.source import UpstreamSource  # HTTP only for this form

    up, repo = upstream_for(ref, config)
    try:
        data, media_type, _ = await up.get_manifest(repo, ref.reference, MAX_MANIFEST_SIZE)
        if media_type not in INDEX_TYPES:
            return media_type, "not a list: a single manifest, pulled as it is"
        return await resolve_fetching(data, host, ClientCaps(), UpstreamSource(up, repo))
    finally:
        await up.close()


def layout_loader(blobs: Path | None) -> Callable[[str], bytes | None]:
    """Read ``DIR/<algorithm>/<hex>``; only well-formed digests ever become paths."""

    def load(digest: str) -> bytes | None:
        m = _DIGEST.match(digest)
        if blobs is None or m is None:
            return None
        try:
            return (blobs / m.group(1) / m.group(2)).read_bytes()
        except OSError:
            return None

    return load


def print_decision(decision: Decision, as_json: bool) -> None:
    if as_json:
        print(json.dumps(decision.to_json(), indent=2))
        return
    print(f"host: {decision.host}")
    print(f"runs: {', '.join(decision.runs)}")
    c = decision.chosen
    print(f"chosen: {c.digest} {c.platform} ({c.label}) {c.media_type}" if c else "chosen: nothing fits this host")
    for cand in decision.candidates:
        print(f"  candidate  rank {cand.rank:<2} {cand.label:<28} {cand.platform!s:<24} {cand.digest}")
    for r in decision.rejected:
        print(f"  rejected   {r.platform or '-':<24} {r.digest or '-'}: {r.reason}")
    for w in decision.warnings:
        print(f"  warning    {w}")
