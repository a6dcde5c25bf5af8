"""Manifests by digest through the cache (``pull.content``): fetched once, verified, kept; what
does not match its digest or is not a manifest is refused and nothing is kept; what is held is
never written again.  Over the in-memory store, against the test double."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.config import UpstreamConfig, load_config
from proxy.errors import ManifestInvalid
from proxy.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from proxy.pull.content import ManifestContent, sniff_type
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.storage.memory import MemoryStore
from proxy.storage.tagindex import TagIndex
from tests.fakeupstream import FakeUpstream, manifest_for

MANIFEST = manifest_for([("sha256:" + "1" * 64, 10)], ("sha256:" + "2" * 64, 5))
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class ReadOnly(MemoryStore):
    async def save(self, digest: str, data: bytes, media_type: str = "") -> None:
        raise OSError(30, "Read-only file system")


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[FakeUpstream, Upstream, TagIndex, Route]]:
    fake = FakeUpstream(manifests={DIGEST: (MANIFEST, OCI_MANIFEST)}).start()
    config = load_config(None, {"upstreams": [{"name": "up", "url": fake.url}]})
    session = aiohttp.ClientSession()
    up = Upstream(UpstreamConfig(name="up", url=fake.url), config.limits, session=session)
    index = TagIndex(tmp_path / "index.db")
    yield fake, up, index, Route(config.upstreams[0], "library/x")
    await session.close()
    index.close()
    fake.stop()


async def test_a_manifest_is_fetched_once_verified_and_kept(
    parts: tuple[FakeUpstream, Upstream, TagIndex, Route], tmp_path: Path
) -> None:
    fake, up, index, route = parts
    store = MemoryStore(tmp_path / "tmp")
    content = ManifestContent(load_config(None), store, index, {"up": up})
    assert await content.load(route, DIGEST) == MANIFEST
    assert await content.load(route, DIGEST) == MANIFEST
    assert fake.count("GET", DIGEST) == 1 and await content.stored_type(DIGEST) == OCI_MANIFEST


async def test_bytes_that_do_not_match_or_are_no_manifest_are_refused_and_not_kept(
    parts: tuple[FakeUpstream, Upstream, TagIndex, Route], tmp_path: Path
) -> None:
    fake, up, index, route = parts
    other = "sha256:" + "f" * 64
    fake.manifests[other] = (MANIFEST, OCI_MANIFEST)  # served under a digest it does not hash to
    content = ManifestContent(load_config(None), MemoryStore(tmp_path / "tmp"), index, {"up": up})
    with pytest.raises(ManifestInvalid):
        await content.load(route, other)
    assert await content.stored_type(other) is None
    with pytest.raises(ManifestInvalid, match="do not match its digest"):
        await content.keep_fetched_by_tag(MANIFEST, OCI_MANIFEST, other, "up")
    with pytest.raises(ManifestInvalid, match="not a manifest"):
        await content.keep_fetched_by_tag(b'{"hello": 1}', "application/json", None, "up")


async def test_what_is_held_is_not_written_again(
    parts: tuple[FakeUpstream, Upstream, TagIndex, Route], tmp_path: Path
) -> None:
    """A read-only cache still answers with what it holds (a write would fail)."""
    _, up, index, _ = parts
    writable = ManifestContent(load_config(None), MemoryStore(tmp_path / "a"), index, {"up": up})
    assert await writable.keep_fetched_by_tag(MANIFEST, OCI_MANIFEST, DIGEST, "up") == DIGEST
    read_only = ReadOnly(tmp_path / "b")
    read_only.content = writable.store.content  # type: ignore[attr-defined]  # the same bytes, now read-only
    again = ManifestContent(load_config(None), read_only, index, {"up": up})
    assert await again.keep_fetched_by_tag(MANIFEST, OCI_MANIFEST, DIGEST, "up") == DIGEST


def test_sniffing_the_type_of_an_untyped_manifest() -> None:
    assert sniff_type(MANIFEST) == OCI_MANIFEST
    assert sniff_type(b'{"schemaVersion": 2, "manifests": []}') == OCI_INDEX
    assert sniff_type(b"[1, 2]") == "" and sniff_type(b"not json") == ""
