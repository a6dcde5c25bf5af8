"""``platproxy prefetch IMAGE... [--platform P]...``: warm a running platproxy's cache.

It works against a running server (``--server``, default http://127.0.0.1:5000) rather than on
the cache directory, so everything it warms goes through the same verification, single-flight
fills and disk budget as a real pull.  Without ``--platform`` it pulls what the server resolves
for its own host.  With platforms (a central mirror warming for a mixed fleet) it asks for each
tag through the platform selector (``platform.linux.arm64.v8/<name>``), so the server resolves it
as it will for that platform's clients and keeps the tag record under the same key a client of
that platform (a Docker ``User-Agent``, a ``[[clients]]`` rule without features) will look up;
then it pulls the chosen manifest's blobs, every blob at most once across platforms and images.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tqdm import tqdm

from proxy.config import check_platform
from proxy.errors import PlatproxyError
from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from proxy.oci.names import ImageRef
from proxy.oci.resolve import InvalidIndex
from proxy.pull.route import SELECTOR

DESCRIPTION = (
    "Pull images through a running platproxy so that later pulls are cache hits: what the server resolves "
    "for its own host, or with --platform what each of those platforms gets."
)

CHUNK = 1 << 20


class PrefetchError(Exception):
    """The server refused or failed; the message says what and for which image."""


@dataclass
class Result:
    image: str
    platform: str
    manifest: str
    blobs: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


class Prefetcher:
    def __init__(self, server: str, session: aiohttp.ClientSession, progress: Any = None) -> None:
        self.server = server.rstrip("/")
        self.session = session
        self.progress = progress
        self.done: set[str] = set()

    def _url(self, ref: ImageRef, kind: str, reference: str) -> str:
        return f"{self.server}/v2/{ref.name}/{kind}/{reference}?ns={ref.registry}"

    async def manifest(self, ref: ImageRef, reference: str) -> tuple[bytes, str, dict[str, str]]:
        async with self.session.get(self._url(ref, "manifests", reference), headers={"Accept": UPSTREAM_ACCEPT}) as r:
            body = await r.read()
            if r.status != 200:
                raise PrefetchError(
                    f"{ref.registry}/{ref.name}@{reference}: {r.status} {body[:300].decode(errors='replace')}"
                )
            return body, r.headers.get("Content-Type", ""), dict(r.headers)

    async def blob(self, ref: ImageRef, digest: str, size: int, result: Result) -> None:
        if digest in self.done:
            return
        self.done.add(digest)
        async with self.session.get(self._url(ref, "blobs", digest)) as r:
            if r.status != 200:
                result.errors.append(f"blob {digest}: {r.status}")
                return
            async for chunk in r.content.iter_chunked(CHUNK):
                result.bytes += len(chunk)
                if self.progress is not None:
                    self.progress.update(len(chunk))
        result.blobs += 1

    async def image(self, ref: ImageRef, manifest: bytes, platform: str, digest: str) -> Result:
        result = Result(f"{ref.registry}/{ref.name}:{ref.reference}", platform, digest)
        doc = json.loads(manifest)
        descriptors = [doc.get("config", {}), *doc.get("layers", [])]
        if self.progress is not None:
            self.progress.total = (self.progress.total or 0) + sum(
                int(d.get("size", 0)) for d in descriptors if d.get("digest") not in self.done
            )
        for d in descriptors:
            if isinstance(d.get("digest"), str):
                await self.blob(ref, d["digest"], int(d.get("size", 0)), result)
        return result

    async def prefetch(self, ref: ImageRef, platforms: list[str]) -> list[Result]:
        if not platforms:
            body, _, headers = await self.manifest(ref, ref.reference)
            resolved = headers.get("X-Platproxy-Resolved-From")
            label = headers.get("X-Platproxy-Platform", "(the server's host)" if resolved else "(not a list)")
            return [await self.image(ref, body, label, headers.get("Docker-Content-Digest", ""))]
        results = []
        for spec in platforms:
            selected = ImageRef(ref.registry, f"{SELECTOR}{spec.replace('/', '.')}/{ref.name}", ref.reference)
            try:
                body, _, headers = await self.manifest(selected, ref.reference)
            except PrefetchError as exc:
                results.append(Result(f"{ref.registry}/{ref.name}:{ref.reference}", spec, "", errors=[str(exc)]))
                continue
            result = await self.image(selected, body, headers.get("X-Platproxy-Platform", spec),
                                      headers.get("Docker-Content-Digest", ""))  # fmt: skip
            result.image = f"{ref.registry}/{ref.name}:{ref.reference}"
            results.append(result)
        return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="alpine:3.20, ghcr.io/o/r:tag, ...")
    parser.add_argument("--platform", action="append", default=[], help="warm for this platform (repeatable)")
    parser.add_argument("--server", default="http://127.0.0.1:5000", help="the running platproxy")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


async def _run(args: argparse.Namespace) -> list[Result]:
    progress = None
    if sys.stderr.isatty() and not args.json:
        progress = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="prefetch", file=sys.stderr)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        prefetcher = Prefetcher(args.server, session, progress)
        results: list[Result] = []
        for text in args.images:
            new = await prefetcher.prefetch(ImageRef.parse(text), args.platform)
            results += new
            if not args.json:
                for r in new:
                    line = f"{r.image} {r.platform} {r.manifest} blobs={r.blobs} bytes={r.bytes}"
                    line += f" errors={r.errors}" if r.errors else ""
                    tqdm.write(line, file=sys.stdout) if progress is not None else print(line)
    if progress is not None:
        progress.close()
    return results


def run(args: argparse.Namespace) -> int:
    try:
        args.platform = [str(check_platform(spec)) for spec in args.platform]  # normalized, as the server does
    except ValueError as exc:
        print(f"platproxy prefetch: --platform: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_run(args))
    except PlatproxyError as exc:
        print(f"platproxy prefetch: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except (PrefetchError, InvalidIndex, aiohttp.ClientError, OSError) as exc:
        print(f"platproxy prefetch: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    return 1 if any(r.errors for r in results) else 0
