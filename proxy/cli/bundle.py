"""``platproxy bundle export | import``: OCI layouts for air-gapped and edge sites, trimmed to the
platforms that run there.

``export`` takes the named images (or every image the fleet pulled), keeps for each its index's
original bytes, the children the site runs (``--platforms observed``: the ones the mirror served,
from the tag and fleet records; a list: what the resolver picks for each; ``all``), their
attestations, configs and layers, from the cache (``--fetch``: what is missing from the
upstream, kept in the cache on the way), and writes a directory, ``.tar`` or ``.tar.zst``.
``--since EARLIER`` leaves out every blob the earlier bundle has.  ``import`` verifies every blob
of a bundle against its digest before it keeps anything, then seeds the cache (file store or
bucket) with the blobs, the manifests, each image's tag record and which repository holds what,
so a mirror with no upstream reachable serves those tags to each platform the bundle has.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostinfo.probe import host_profile
from proxy.bundle.layout import LayoutError, LayoutWriter, blob_digests
from proxy.bundle.select import Selection, select
from proxy.cli.bundle_common import PLATFORMS, REF_NAME, REGISTRY, REPOSITORY, TAG, BundleError, open_cache
from proxy.cli.bundleimport import import_bundle
from proxy.cli.common import fail, subcommand
from proxy.config import Config, ConfigError, load_config
from proxy.config.upstream import UpstreamConfig
from proxy.errors import PlatproxyError, StoreUnavailable, UpstreamError
from proxy.fleet.whatif import decide
from proxy.oci import jsondoc
from proxy.oci.descriptors import referenced
from proxy.oci.digests import digest_of, matches
from proxy.oci.mediatypes import INDEX_TYPES, OCI_INDEX
from proxy.oci.names import ImageRef
from proxy.pull.route import default_upstream, upstream_named
from proxy.registry.client import Upstream
from proxy.sizes import MAX_MANIFEST_SIZE, human
from proxy.storage.factory import NoCache, Storage
from proxy.storage.records import TagRecord

DESCRIPTION = "Bundles for air-gapped sites: export images trimmed to the platforms that run, import them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundle_command", required=True)
    export = subcommand(sub, "export", "write an OCI layout of images, trimmed to the platforms that run")
    export.add_argument("images", nargs="*", help="images (docker.io/library/alpine:3.20); default: every one pulled")
    export.add_argument("--images-from", type=Path, help="a file of images, one per line")
    export.add_argument("--platforms", default="observed",
                        help="observed (what the fleet was served), all, or linux/amd64,linux/arm/v7")  # fmt: skip
    export.add_argument("-o", "--output", type=Path, required=True, help="a directory, FILE.tar or FILE.tar.zst")
    export.add_argument("--fetch", action="store_true", help="fetch what the cache lacks from the upstream")
    export.add_argument("--since", type=Path, help="leave out every blob this earlier bundle holds")
    export.set_defaults(action=run_export)
    load = subcommand(sub, "import", "verify a bundle, then seed the cache with it")
    load.add_argument("path", type=Path, help="a bundle: a directory, FILE.tar or FILE.tar.zst")
    load.set_defaults(action=run_import)
    for command in (export, load):
        command.add_argument("--config", type=Path, help="TOML config (its cache directory or bucket, its upstreams)")
        command.add_argument("--cache-dir", help="the cache directory (overrides the config)")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, {"cache.dir": args.cache_dir} if args.cache_dir else {})


# -- export ------------------------------------------------------------------------------------


@dataclass
class Planned:
    image: str
    upstream: UpstreamConfig
    repo: str
    tag: str
    index_digest: str
    index: bytes
    media_type: str
    selection: Selection = field(default_factory=Selection)
    manifests: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    all_bytes: int = 0
    at_least: bool = False
    uncached_attestations: int = 0
    """Attestations of kept children left out because the cache lacks them (``--fetch`` adds them)."""


class Exporter:
    def __init__(self, config: Config, storage: Storage, fetch: bool) -> None:
        self.config = config
        self.storage = storage
        self.fetch = fetch
        self.upstreams: dict[str, Upstream] = {}

    def upstream(self, up: UpstreamConfig) -> Upstream:
        if up.name not in self.upstreams:
            self.upstreams[up.name] = Upstream(up, self.config.limits)
        return self.upstreams[up.name]

    async def manifest(self, up: UpstreamConfig, repo: str, digest: str) -> bytes | None:
        data = await self.storage.store.get(digest)
        if data is not None and matches(digest, data):
            return data
        if not self.fetch:
            return None
        try:
            data, media_type, _ = await self.upstream(up).get_manifest(repo, digest, MAX_MANIFEST_SIZE)
        except UpstreamError:
            return None
        if not matches(digest, data, media_type):
            raise BundleError(f"the upstream {up.name} sent bytes that do not match {digest}")
        await self.storage.store.save(digest, data, media_type)
        self.storage.tags.index.put_manifest(digest, media_type, len(data))
        return data

    async def blob_file(self, up: UpstreamConfig, repo: str, digest: str, tmp: Path) -> Path:
        """A local file holding the verified blob: the cache's own, or a copy (a bucket, an upstream)."""
        located = await self.storage.store.locate(digest)
        if located is not None and hasattr(located, "path") and located.path.is_file():
            return Path(located.path)
        copy = tmp / digest.replace(":", "-")
        size = await self.storage.store.stat(digest)
        if size is not None:
            with copy.open("wb") as out:
                async for chunk in self.storage.store.read_range(digest, 0, size):
                    out.write(chunk)
        elif self.fetch:  # kept in the cache on the way, verified like any fill
            writer = self.storage.store.writer(digest)
            try:
                async with self.upstream(up).open_blob(repo, digest) as resp, resp:
                    total = resp.content_length or 0
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        writer.write(chunk)
                        self._progress(digest, writer.written, total)
                writer.verify()
                await self.storage.store.commit(writer)
            except UpstreamError as exc:
                raise BundleError(f"{digest} of {repo}: not in the cache, and the upstream: {exc.message}") from None
            except ValueError:
                raise BundleError(f"the upstream {up.name} sent a blob that does not match {digest}") from None
            finally:
                if not writer.committed:
                    writer.abort()
            return await self.blob_file(up, repo, digest, tmp)
        else:
            raise BundleError(f"{digest} of {up.name}/{repo} is not in the cache (--fetch gets it from the upstream)")
        return copy

    def _progress(self, digest: str, done: int, total: int) -> None:
        """One line on a terminal, rewritten in place, while a blob comes from the upstream."""
        if sys.stderr.isatty():
            end = "\n" if total and done >= total else ""
            print(f"\rfetching {digest[:19]}  {human(done)} of {human(total) if total else '?'}", end=end,
                  file=sys.stderr, flush=True)  # fmt: skip

    def wanted_images(self, names: list[str]) -> list[tuple[UpstreamConfig, str, str]]:
        if names:
            found = []
            for text in names:
                ref = ImageRef.parse(text)
                up = upstream_named(self.config, ref.registry) or (
                    default_upstream(self.config) if not ref.explicit else None)  # fmt: skip
                if up is None:
                    raise BundleError(f"{text}: {ref.registry} is not an upstream of this configuration")
                repo = f"library/{ref.name}" if up.is_docker_hub and "/" not in ref.name else ref.name
                found.append((up, repo, ref.reference or "latest"))
            return found
        seen: dict[tuple[str, str, str], UpstreamConfig] = {}
        for r in self.storage.tags.index.all_tags():
            up = upstream_named(self.config, r.upstream)
            if up is not None:
                seen.setdefault((r.upstream, r.repo, r.tag), up)
        return [(up, repo, tag) for (_, repo, tag), up in sorted(seen.items())]

    async def plan(self, up: UpstreamConfig, repo: str, tag: str, platforms: str) -> Planned:
        image = f"{up.name}/{repo}:{tag}"
        records = self.storage.tags.index.records_of(up.name, repo, tag)
        digest = next((r.index_digest or r.upstream_digest for r in records), None)
        if digest is None and self.fetch:
            try:
                data, media_type, _ = await self.upstream(up).get_manifest(repo, tag, MAX_MANIFEST_SIZE)
            except UpstreamError as exc:
                raise BundleError(f"{image}: {exc.message}") from None
            digest = digest_of(data)
            await self.storage.store.save(digest, data, media_type)
            self.storage.tags.index.put_manifest(digest, media_type, len(data))
        if digest is None:
            raise BundleError(f"{image} was never pulled through this mirror (--fetch asks the upstream)")
        index = await self.manifest(up, repo, digest)
        if index is None:
            raise BundleError(f"{image}: its index {digest} is not in the cache (--fetch asks the upstream)")
        media_type = str(jsondoc.loads(index).get("mediaType") or "") or self.storage.tags.index.manifest_type(
            digest) or OCI_INDEX  # fmt: skip
        planned = Planned(image, up, repo, tag, digest, index, media_type)
        if media_type not in INDEX_TYPES:  # a single manifest: kept whole
            planned.manifests[digest] = index
            await self._add_blobs(planned, index)
            return planned
        wanted = await self._wanted(planned, records, platforms)
        planned.selection = select(index, wanted)
        for entry in [*planned.selection.kept, *planned.selection.attestations]:
            child = await self.manifest(up, repo, entry.digest)
            if child is None and entry in planned.selection.attestations:  # clients never pull these
                planned.selection.attestations.remove(entry)
                planned.selection.left_out.append(entry)
                planned.uncached_attestations += 1
                continue
            if child is None:
                raise BundleError(f"{image}: {entry.platform} manifest {entry.digest} is not in the cache "
                                  "(--fetch gets it from the upstream)")  # fmt: skip
            planned.manifests[entry.digest] = child
            await self._add_blobs(planned, child)
        kept_bytes = sum(planned.blobs.values()) + sum(len(d) for d in planned.manifests.values())
        planned.all_bytes = kept_bytes
        for entry in planned.selection.left_out:
            other = await self.storage.store.get(entry.digest)
            planned.all_bytes += entry.size
            if other is None:
                planned.at_least = True
                continue
            planned.all_bytes += sum(s or 0 for d, s in referenced(other).items() if d not in planned.blobs)
        return planned

    async def _add_blobs(self, planned: Planned, manifest: bytes) -> None:
        for digest, size in referenced(manifest).items():
            planned.blobs[digest] = size or 0

    async def _wanted(self, planned: Planned, records: list[TagRecord], platforms: str) -> set[str] | None:
        if platforms == "all":
            return None
        if platforms == "observed":
            chosen = {r.digest for r in records if r.index_digest == planned.index_digest}
            fleet = self.storage.fleet
            chosen |= {r.chosen for r in fleet.local() if r.image == planned.image and r.chosen
                       and r.index_digest == planned.index_digest}  # fmt: skip
            if not chosen:
                raise BundleError(f"{planned.image}: no platform pulled it through this mirror yet (give --platforms)")
            return chosen
        chosen = set()
        for spec in (p.strip() for p in platforms.split(",") if p.strip()):
            try:
                profile = host_profile(spec, (), "no", "no")
            except ValueError as exc:
                raise BundleError(f"--platforms {spec}: {exc}") from None

            async def load(digest: str) -> bytes | None:
                return await self.manifest(planned.upstream, planned.repo, digest)

            decision = await decide(planned.index, profile, load)
            if decision.chosen is None:
                raise BundleError(f"{planned.image}: nothing in its index runs on {spec}")
            chosen.add(decision.chosen.digest)
        return chosen

    async def close(self) -> None:
        for up in self.upstreams.values():
            await up.close()


async def _export(args: argparse.Namespace, config: Config) -> int:
    names = list(args.images)
    if args.images_from:
        names += [line.strip() for line in args.images_from.read_text().splitlines() if line.strip()]
    earlier = blob_digests(args.since) if args.since else set()
    storage = await open_cache(config, must_exist=not args.fetch)
    exporter = Exporter(config, storage, args.fetch)
    try:
        plans = [await exporter.plan(up, repo, tag, args.platforms) for up, repo, tag in exporter.wanted_images(names)]
        if not plans:
            raise BundleError("nothing to export: no image named, and none pulled through this mirror yet")
        writer = LayoutWriter(args.output)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                for p in plans:
                    writer.add_bytes(p.index_digest, p.index) if p.index_digest not in earlier else None
                    for digest, data in p.manifests.items():
                        writer.add_bytes(digest, data) if digest not in earlier else None
                    for digest in p.blobs:
                        if digest not in earlier and digest not in writer.written:
                            writer.add_file(digest, await exporter.blob_file(p.upstream, p.repo, digest, Path(tmp)))
            writer.finish(_index_json(plans))
        except BaseException:
            writer.abort()
            raise
    finally:
        await exporter.close()
        await storage.close()
    _say_exported(args, plans, writer.written, earlier)
    return 0


def _index_json(plans: list[Planned]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": p.media_type, "digest": p.index_digest, "size": len(p.index),
         "annotations": {REF_NAME: p.image, REGISTRY: p.upstream.name, REPOSITORY: p.repo, TAG: p.tag,
                         PLATFORMS: ",".join(p.selection.platforms)}}
        for p in plans]}  # fmt: skip


def _say_exported(args: argparse.Namespace, plans: list[Planned], written: set[str], earlier: set[str]) -> None:
    kept = all_bytes = 0
    at_least = False
    for p in plans:
        s = p.selection
        left = ", ".join(e.platform for e in s.left_out if e.platform != "attestation") or "nothing"
        attestations = f" and {len(s.attestations)} attestation(s)" if s.attestations else ""
        uncached = (f" ({p.uncached_attestations} attestation(s) of kept platforms are not in the cache: "
                    "--fetch adds them)") if p.uncached_attestations else ""  # fmt: skip
        print(f"{p.image} ({p.index_digest}): kept {', '.join(s.platforms) or 'the manifest'}{attestations}; "
              f"left out {left}{uncached}")  # fmt: skip
        size = sum(p.blobs.values()) + sum(len(d) for d in p.manifests.values()) + len(p.index)
        kept += size
        all_bytes += max(p.all_bytes + len(p.index), size)
        at_least = at_least or p.at_least
    shared = len(earlier & set().union(*(set(p.blobs) for p in plans)))
    skipped = f", {shared} blob(s) left to {args.since}" if earlier else ""
    print(
        f"wrote {args.output}: {len(plans)} image(s), {len(written)} blob(s){skipped}, {human(kept)}; every "
        f"platform: {'at least ' if at_least else ''}{human(all_bytes)} (saved {human(max(all_bytes - kept, 0))})"
    )


def run_export(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_export(args, _config(args)))
    except (BundleError, LayoutError, ConfigError, NoCache, StoreUnavailable, PlatproxyError) as exc:
        return fail("bundle export", str(getattr(exc, "message", "") or exc))
    except FileExistsError:
        return fail("bundle export", f"{args.output} exists: give a new name")
    except OSError as exc:
        return fail("bundle export", f"{exc.filename or args.output}: {exc.strerror or exc}")


def run_import(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(import_bundle(args, _config(args)))
    except (BundleError, LayoutError, ConfigError, StoreUnavailable, PlatproxyError) as exc:
        return fail("bundle import", str(getattr(exc, "message", "") or exc))
    except (OSError, sqlite3.Error, ValueError) as exc:
        return fail(
            "bundle import", f"{getattr(exc, 'filename', None) or args.path}: {getattr(exc, 'strerror', None) or exc}"
        )


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
