"""``platproxy bundle import``: a bundle verified, then kept as if each image had been pulled.

Two passes over the layout, whatever its size: the first hashes every blob against its name
and reads the index (a mismatch refuses the whole bundle, naming the object, before anything is
written); the second keeps what the cache lacks, manifests as manifests.  Then each image gets
its tag record (the index as published: every platform the bundle holds is resolved from it,
``proxy.pull.sparse`` serving what is present) and the repository is recorded as holding every
digest of the image, so a mirror with no upstream reachable serves it.  An image whose index
needs a blob neither the bundle nor the cache holds (a delta bundle imported before the bundle
it builds on) is refused by name.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.bundle.layout import digest_of_name, members
from proxy.cli.bundle_common import REF_NAME, REGISTRY, REPOSITORY, TAG, BundleError, open_cache
from proxy.config import Config
from proxy.oci import jsondoc
from proxy.oci.descriptors import referenced
from proxy.oci.digests import matches
from proxy.oci.mediatypes import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX
from proxy.pull.route import upstream_named
from proxy.pull.targets import UNRESOLVED
from proxy.sizes import MAX_MANIFEST_SIZE
from proxy.storage.records import TagRecord

# -- import ------------------------------------------------------------------------------------


@dataclass
class Checked:
    images: list[dict[str, Any]]
    sizes: dict[str, int]
    small: dict[str, bytes]
    """Every blob of at most ``MAX_MANIFEST_SIZE`` that is JSON: the manifests among them are kept as such."""


def _verify(path: Path) -> Checked:
    """Pass 1: every blob hashed against its name; the index read.  ``BundleError`` naming the
    first object that does not match (nothing is written before this returns)."""
    sizes: dict[str, int] = {}
    small: dict[str, bytes] = {}
    index: Any = None
    for name, size, readable in members(path):
        if name == "index.json":
            index = jsondoc.loads(readable.read(MAX_MANIFEST_SIZE + 1))
            continue
        digest = digest_of_name(name)
        if digest is None:
            continue
        algorithm, _, encoded = digest.partition(":")
        if algorithm != "sha256":
            raise BundleError(f"{name}: only sha256 blobs are verified, and this bundle is refused")
        hasher = hashlib.sha256()
        head = b""
        while chunk := readable.read(1 << 20):
            hasher.update(chunk)
            if len(head) <= MAX_MANIFEST_SIZE:
                head += chunk
        if hasher.hexdigest() != encoded:
            raise BundleError(f"{name} does not match its digest (sha256 {hasher.hexdigest()}): the bundle is "
                              "refused and nothing of it was imported")  # fmt: skip
        sizes[digest] = size
        if size <= MAX_MANIFEST_SIZE and head[:1] == b"{":
            small[digest] = head
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise BundleError(f"{path} has no index.json of an OCI layout")
    images = [m for m in index["manifests"] if isinstance(m, dict) and isinstance(m.get("annotations"), dict)
              and m["annotations"].get(REGISTRY) and m["annotations"].get(REPOSITORY)]  # fmt: skip
    return Checked(images, sizes, small)


async def import_bundle(args: argparse.Namespace, config: Config) -> int:
    checked = _verify(args.path)
    storage = await open_cache(config, must_exist=False)
    try:
        store, index = storage.store, storage.tags.index
        plan: list[tuple[dict[str, Any], set[str], set[str], list[str]]] = []
        for image in checked.images:
            digest = str(image.get("digest"))
            top = checked.small.get(digest) or await store.get(digest)
            if top is None or not matches(digest, top):
                raise BundleError(f"{image['annotations'].get(REF_NAME, digest)}: its index {digest} is neither in "
                                  "the bundle nor in the cache (import the earlier bundle first)")  # fmt: skip
            manifests, blobs, platforms = {digest}, set(), []
            todo = [top]
            if str(image.get("mediaType")) in INDEX_TYPES:
                todo = []
                for entry in jsondoc.loads(top).get("manifests", []):
                    d = entry.get("digest") if isinstance(entry, dict) else None
                    data = checked.small.get(str(d)) if d else None
                    if data is None and d and await store.stat(d) is not None:
                        data = await store.get(d)
                    if data is None:
                        continue  # left out of the bundle: served sparse
                    manifests.add(str(d))
                    todo.append(data)
                    p = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
                    if p and p.get("os") != "unknown":
                        platforms.append("/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k)))
            for data in todo:
                for d in referenced(data):
                    if d not in checked.sizes and await store.stat(d) is None:
                        named = image["annotations"].get(REF_NAME, digest)
                        raise BundleError(f"{named} needs {d}, which is neither in the bundle nor in the cache "
                                          "(import the earlier bundle first)")  # fmt: skip
                    blobs.add(d)
            plan.append((image, manifests, blobs, platforms))
        manifest_digests = set().union(*(m for _, m, _, _ in plan)) if plan else set()
        added = 0
        for name, _, readable in members(args.path):  # pass 2: keep what was verified
            found = digest_of_name(name)
            if found is None or await store.stat(found) is not None:
                continue
            digest = found
            if digest in manifest_digests and digest in checked.small:
                data = checked.small[digest]
                media_type = str(jsondoc.loads(data).get("mediaType") or "")
                await store.save(digest, data, media_type if media_type in MANIFEST_TYPES else "")
                index.put_manifest(digest, media_type, len(data))
            else:
                writer = store.writer(digest)
                try:
                    while chunk := readable.read(1 << 20):
                        writer.write(chunk)
                    writer.verify()
                    await store.commit(writer)
                finally:
                    if not writer.committed:
                        writer.abort()
            added += 1
        now = time.time()
        for image, manifests, blobs, platforms in plan:
            notes = image["annotations"]
            upstream, repo, tag = str(notes[REGISTRY]), str(notes[REPOSITORY]), str(notes.get(TAG, "latest"))
            media_type = str(image.get("mediaType") or OCI_INDEX)
            digest = str(image["digest"])
            await storage.tags.keep(TagRecord(upstream, repo, tag, UNRESOLVED, digest, media_type, digest, None, "",
                                              "", f"imported from {args.path.name}", now, now))  # fmt: skip
            with_sizes: dict[str, int | None] = {d: checked.sizes.get(d) for d in manifests | blobs}
            index.add_members(upstream, repo, with_sizes)
            if upstream_named(config, upstream) is None:
                print(f"note: {upstream} is not an upstream of this configuration: add it to serve {repo}:{tag}")
            print(f"{upstream}/{repo}:{tag}: {', '.join(platforms) or 'the manifest'}")
    finally:
        await storage.close()
    print(f"imported {args.path}: {len(checked.images)} image(s), {added} new blob(s) of {len(checked.sizes)}")
    return 0
