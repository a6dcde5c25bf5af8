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
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from tqdm import tqdm

from proxy.cli.common import fail
from proxy.config import check_platform
from proxy.errors import PlatproxyError
from proxy.oci import jsondoc
from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from proxy.oci.names import ImageRef, is_digest
from proxy.oci.resolve import InvalidIndex
from proxy.pull.route import SELECTOR
from proxy.sizes import human

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
    """``registry/name:tag`` (or ``@digest``), as the user can pass it again."""
    platform: str
    manifest: str = ""
    fetched: int = 0
    """Blobs the server had to fetch from the upstream for this (it did not hold them)."""
    fetched_bytes: int = 0
    hits: int = 0
    """Blobs the server already held."""
    hit_bytes: int = 0
    shared: int = 0
    """Blobs an earlier image of this run already brought (counted there, needed here too)."""
    shared_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def line(self) -> str:
        if not self.ok:
            return f"failed  {self.image}  {self.platform}: {'; '.join(self.errors)}"
        shared = f"; from an earlier image of this run {self.shared}, {human(self.shared_bytes)}" if self.shared else ""
        cached = f"already cached {self.hits}, {human(self.hit_bytes)}"
        return (f"ok      {self.image}  {self.platform}  {self.manifest}  fetched {self.fetched} blob(s), "
                f"{human(self.fetched_bytes)}; {cached}{shared}")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def display(ref: ImageRef) -> str:
    """``ghcr.io/o/r:1``, or ``alpine:3.20`` as typed (the server's default upstream decides where it
    lives), or ``…@sha256:…``: how the image is named back to the user."""
    name = f"{ref.registry}/{ref.name}" if ref.explicit else ref.typed
    return f"{name}{'@' if is_digest(ref.reference) else ':'}{ref.reference}"


def error_text(status: int, body: bytes) -> str:
    """``404 MANIFEST_UNKNOWN: manifest unknown``: the first OCI error of a body, never the raw JSON."""
    try:
        first = jsondoc.loads(body)["errors"][0]
        return f"{status} {first['code']}: {first['message']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"{status} {body[:120].decode(errors='replace').strip()}".strip()


class Prefetcher:
    def __init__(self, server: str, session: aiohttp.ClientSession, progress: Any = None) -> None:
        self.server = server.rstrip("/")
        self.session = session
        self.progress = progress
        self.done: set[str] = set()

    def _url(self, ref: ImageRef, kind: str, reference: str) -> str:
        """A name with its registry is asked for with ``?ns=`` (as containerd does); one without is
        routed by the server exactly as a pull of ``localhost:5000/<name>`` (its default upstream)."""
        if ref.explicit:
            return f"{self.server}/v2/{ref.name}/{kind}/{reference}?ns={ref.registry}"
        return f"{self.server}/v2/{ref.typed}/{kind}/{reference}"

    async def manifest(self, ref: ImageRef, reference: str) -> tuple[bytes, str, dict[str, str]]:
        async with self.session.get(self._url(ref, "manifests", reference), headers={"Accept": UPSTREAM_ACCEPT}) as r:
            body = await r.read()
            if r.status != 200:
                raise PrefetchError(error_text(r.status, body))
            return body, r.headers.get("Content-Type", ""), dict(r.headers)

    async def blob(self, ref: ImageRef, digest: str, size: int, result: Result) -> None:
        if digest in self.done:
            result.shared, result.shared_bytes = result.shared + 1, result.shared_bytes + size
            return
        self.done.add(digest)
        async with self.session.get(self._url(ref, "blobs", digest)) as r:
            if r.status != 200:
                result.errors.append(f"blob {digest}: {error_text(r.status, await r.read())}")
                return
            got = 0
            async for chunk in r.content.iter_chunked(CHUNK):
                got += len(chunk)
                if self.progress is not None:
                    self.progress.update(len(chunk))
        if r.headers.get("X-Platproxy-Cache", "").startswith("hit"):
            result.hits, result.hit_bytes = result.hits + 1, result.hit_bytes + got
        else:
            result.fetched, result.fetched_bytes = result.fetched + 1, result.fetched_bytes + got

    async def image(self, ref: ImageRef, manifest: bytes, platform: str, digest: str, image: str) -> Result:
        result = Result(image, platform, digest)
        doc = jsondoc.loads(manifest)
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
        """One result per platform (one for the server's host without platforms); a refusal is a
        failed result, not an exception: the other images and platforms go on."""
        image = display(ref)
        results = []
        for spec in platforms or [""]:
            asked = (
                dataclasses.replace(
                    ref,
                    name=f"{SELECTOR}{spec.replace('/', '.')}/{ref.name}",
                    typed=f"{SELECTOR}{spec.replace('/', '.')}/{ref.typed}" if ref.typed else "",
                )
                if spec
                else ref
            )
            try:
                body, _, headers = await self.manifest(asked, ref.reference)
            except PrefetchError as exc:
                results.append(Result(image, spec or "(the server's host)", errors=[str(exc)]))
                continue
            resolved = headers.get("X-Platproxy-Resolved-From")
            label = (
                headers.get("X-Platproxy-Platform") or spec or ("(the server's host)" if resolved else "(not a list)")
            )
            results.append(await self.image(asked, body, label, headers.get("Docker-Content-Digest", ""), image))
        return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="alpine:3.20, ghcr.io/o/r:tag, ...")
    parser.add_argument("--platform", action="append", default=[], help="warm for this platform (repeatable)")
    parser.add_argument("--server", default="http://127.0.0.1:5000", help="the running platproxy (a URL)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


async def _run(args: argparse.Namespace) -> list[Result]:
    progress = None
    if sys.stderr.isatty() and not args.json:
        progress = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="prefetch", file=sys.stderr)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    results: list[Result] = []
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        prefetcher = Prefetcher(args.server, session, progress)
        for text in args.images:
            try:
                new = await prefetcher.prefetch(ImageRef.parse(text), args.platform)
            except PlatproxyError as exc:
                new = [Result(text, "-", errors=[f"bad image reference: {exc.message}"])]
            except (InvalidIndex, ValueError) as exc:
                new = [Result(text, "-", errors=[f"the server's answer is not a manifest: {exc}"])]
            results += new
            if not args.json:
                for r in new:
                    tqdm.write(r.line(), file=sys.stdout) if progress is not None else print(r.line())
    if progress is not None:
        progress.close()
    return results


def summary(results: list[Result]) -> str:
    good = [r for r in results if r.ok]
    return (f"{len(good)} of {len(results)} prefetched: fetched {sum(r.fetched for r in good)} blob(s), "
            f"{human(sum(r.fetched_bytes for r in good))}; already cached {sum(r.hits for r in good)}, "
            f"{human(sum(r.hit_bytes for r in good))}"
            + (f"; {len(results) - len(good)} failed" if len(good) < len(results) else ""))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        args.platform = [str(check_platform(spec)) for spec in args.platform]  # normalized, as the server does
    except ValueError as exc:
        return fail("prefetch", f"--platform: {exc}")
    server = urlsplit(args.server)
    if server.scheme not in ("http", "https") or not server.hostname:
        return fail("prefetch", f"--server {args.server}: give the running platproxy's URL with its scheme, "
                                "e.g. http://127.0.0.1:5000")  # fmt: skip
    try:
        results = asyncio.run(_run(args))
    except (aiohttp.ClientError, OSError) as exc:
        return fail("prefetch", f"cannot reach {args.server}: {exc}")
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(summary(results))
    return 1 if any(not r.ok for r in results) else 0
