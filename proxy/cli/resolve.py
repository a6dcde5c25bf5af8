"""``platproxy resolve``: show the decision for an index file (offline) or a live image.

Exit codes: 0 a manifest is chosen; 1 nothing fits (the verdict table is still printed);
2 bad input (unreadable or invalid JSON, not an index, a bad platform string), one line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from hostinfo import HostProfile, PlatformError
from hostinfo.probe import host_profile
from proxy.oci.mediatypes import ClientCaps
from proxy.oci.resolve import Decision, InvalidIndex, resolve_loading

_DIGEST = re.compile(r"^(sha256|sha512):([a-f0-9]{64}|[a-f0-9]{128})$")


class UsageError(ValueError):
    """Bad input given on the command line; printed as one line, exit 2."""


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", default="", help="resolve for this platform instead of this host")
    parser.add_argument("--features", default="", help="CPU features of the --platform host, comma-separated")
    parser.add_argument("--ia32", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--aarch32", choices=("auto", "yes", "no"), default="auto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", help="a live image to resolve (instead of --index)")
    parser.add_argument("--index", type=Path, help="a manifest list / image index JSON file (offline)")
    parser.add_argument("--blobs", type=Path, help="the blobs/ folder of an OCI layout (DIR/sha256/<hex>)")
    add_host_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")


def host_from_args(args: argparse.Namespace) -> HostProfile:
    features = tuple(f.strip() for f in args.features.split(",") if f.strip())
    if features and not args.platform:
        raise UsageError("--features goes with --platform (the detected host has its own)")
    try:
        return host_profile(args.platform, features, args.ia32, args.aarch32)
    except PlatformError as exc:
        raise UsageError(f"bad --platform: {exc}") from None


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


def run(args: argparse.Namespace) -> int:
    """The offline form: ``--index FILE [--blobs DIR]``."""
    try:
        host = host_from_args(args)
        try:
            data = args.index.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.index}: {exc.strerror or exc}") from None
        if args.blobs is not None and not args.blobs.is_dir():
            raise UsageError(f"--blobs {args.blobs} is not a folder")
        decision = resolve_loading(data, host, ClientCaps(), layout_loader(args.blobs))
    except UsageError as exc:
        print(f"platproxy resolve: {exc}", file=sys.stderr)
        return 2
    except InvalidIndex as exc:
        print(f"platproxy resolve: {args.index}: {exc}", file=sys.stderr)
        return 2
    print_decision(decision, args.json)
    return 0 if decision.chosen else 1
