"""The pull services in one process: ManifestService and BlobService over the in-memory store,
with an injected clock and an injected HTTP session, against an in-process registry.

The end-to-end tests cover the same behaviour through real clients and Distribution; these pin
the decisions themselves (freshness, stale paths, single-flight, resolution answers) where each
branch can be driven directly, counting what reached the upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from hostinfo import HostProfile, Platform
from proxy.config import Config, UpstreamConfig, load_config
from proxy.errors import ManifestUnknown, UpstreamFailed
from proxy.metrics import Metrics
from proxy.oci.clients import classify
from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, UPSTREAM_ACCEPT
from proxy.pull.blobs import BlobService
from proxy.pull.fills import Fills, read_fill
from proxy.pull.manifests import ManifestService
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.storage.memory import MemoryStore
from proxy.storage.tagindex import TagIndex
from proxy.storage.tags import TagRecords
from tests import indexes
from tests.fakeupstream import FakeUpstream

TTL = 300.0
CLIENT = classify([UPSTREAM_ACCEPT])
"""A client that reads every current format (the manifests are served as they are)."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    upstream: FakeUpstream
    manifests: ManifestService
    blobs: BlobService
    store: MemoryStore
    clock: Clock
    route: Route
    config: Config


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    case = indexes.alpine_with_attestations()
    fake = FakeUpstream()
    fake.manifests["3.20"] = (case.top.data, case.top.media_type)
    for blob in case.blobs:
        if blob.media_type.endswith("manifest.v1+json"):
            fake.manifests[blob.digest] = (blob.data, blob.media_type)
        fake.blobs[blob.digest] = blob.data
    fake.start()
    config = load_config(None, {"upstreams": [{"name": "up", "url": fake.url}], "cache.tag_ttl": TTL})
    session = aiohttp.ClientSession()  # injected: the test owns it and closes it
    up = Upstream(UpstreamConfig(name="up", url=fake.url), config.limits, session=session)
    store = MemoryStore(tmp_path / "tmp")
    tags = TagRecords(TagIndex(tmp_path / "index.db"))
    clock = Clock()
    host = HostProfile(platform=Platform.parse("linux/arm/v7"))
    manifests = ManifestService(config, store, tags, {"up": up}, host, clock=clock)
    blobs = BlobService(store, Fills(store), {"up": up})
    yield Rig(fake, manifests, blobs, store, clock, Route(config.upstreams[0], "library/alpine"), config)
    await blobs.fills.close()
    await session.close()
    tags.close()
    fake.stop()


def gets(rig: Rig, what: str) -> int:
    return rig.upstream.count("GET", what)


async def test_a_cold_tag_is_resolved_kept_and_explained(rig: Rig) -> None:
    answer = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    assert answer.outcome == "miss"
    assert answer.resolution is not None
    assert (answer.resolution.platform, answer.resolution.label) == ("linux/arm/v7", "native")
    assert answer.resolution.index_digest == "sha256:" + hashlib.sha256(rig.upstream.manifests["3.20"][0]).hexdigest()
    assert await rig.store.get(answer.digest) == answer.data  # kept, by the digest it was served as


async def test_a_fresh_tag_never_asks_the_upstream(rig: Rig) -> None:
    first = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    before = len(rig.upstream.seen)
    rig.clock.now += TTL - 1
    again = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    assert (again.outcome, again.digest) == ("hit", first.digest)
    assert len(rig.upstream.seen) == before


async def test_an_old_tag_is_revalidated_with_one_head(rig: Rig) -> None:
    first = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    gets_before = gets(rig, "/manifests/3.20")
    rig.clock.now += TTL + 1
    again = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    assert (again.outcome, again.digest) == ("revalidated", first.digest)
    assert rig.upstream.count("HEAD", "/manifests/3.20") == 1
    assert gets(rig, "/manifests/3.20") == gets_before
    rig.clock.now += 10  # the revalidation restarted the TTL
    assert (await rig.manifests.by_tag(rig.route, "3.20", CLIENT)).outcome == "hit"


async def test_a_failing_upstream_gets_the_cached_answer_as_stale(rig: Rig) -> None:
    first = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    rig.upstream.fail_status = 503
    rig.clock.now += TTL + 1
    stale = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    assert (stale.outcome, stale.digest) == ("stale", first.digest)
    assert stale.resolution is not None and stale.resolution.platform == "linux/arm/v7"


async def test_a_tag_gone_upstream_is_stale_or_gone_by_policy(rig: Rig) -> None:
    await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    del rig.upstream.manifests["3.20"]
    rig.clock.now += TTL + 1
    assert (await rig.manifests.by_tag(rig.route, "3.20", CLIENT)).outcome == "stale"  # the default
    strict = load_config(None, {"upstreams": [{"name": "up", "url": rig.upstream.url}],
                                "cache.tag_ttl": TTL, "cache.serve_stale_on_not_found": False})  # fmt: skip
    rig.manifests.config = strict
    rig.clock.now += TTL + 1
    with pytest.raises(ManifestUnknown):
        await rig.manifests.by_tag(rig.route, "3.20", CLIENT)


async def test_uncached_content_with_the_upstream_down_says_so(rig: Rig) -> None:
    rig.upstream.fail_status = 503
    with pytest.raises(UpstreamFailed) as info:
        await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    assert info.value.error.status == 503


async def test_concurrent_cold_pulls_of_a_tag_ask_the_upstream_once(rig: Rig) -> None:
    answers = await asyncio.gather(*(rig.manifests.by_tag(rig.route, "3.20", CLIENT) for _ in range(8)))
    assert len({a.digest for a in answers}) == 1
    assert gets(rig, "/manifests/3.20") == 1


async def test_concurrent_cold_pulls_of_a_blob_fill_it_once(rig: Rig) -> None:
    answer = await rig.manifests.by_tag(rig.route, "3.20", CLIENT)
    layer = json.loads(answer.data)["layers"][0]["digest"]
    rig.upstream.chunk_delay = 0.01

    async def pull() -> bytes:
        fill, _ = await rig.blobs.fill(rig.route, layer)
        return b"".join([chunk async for chunk in read_fill(fill, 0, None)])

    bodies = await asyncio.gather(*(pull() for _ in range(5)))
    assert {len(b) for b in bodies} == {len(rig.upstream.blobs[layer])}
    assert all(b == rig.upstream.blobs[layer] for b in bodies)
    assert gets(rig, f"/blobs/{layer}") == 1
    for _ in range(100):  # the commit runs after the last client got its bytes
        if await rig.store.stat(layer) is not None:
            break
        await asyncio.sleep(0.01)
    assert await rig.store.get(layer) == rig.upstream.blobs[layer]


async def test_a_conversion_is_made_once_and_answers_by_its_digest(rig: Rig, tmp_path: Path) -> None:
    """Old engines' forms are made on the first request, counted and logged once, and kept:
    later requests and a pull by the converted digest (upstream down) get the same bytes."""
    metrics, key = Metrics(), ec.generate_private_key(ec.SECP256R1())
    service = ManifestService(rig.config, rig.store, TagRecords(TagIndex(tmp_path / "conv.db")),
                              rig.manifests.upstreams, rig.manifests.host, metrics, rig.clock, lambda: key)  # fmt: skip
    docker_1_9, docker_17_09 = classify([], "docker/1.9.1"), classify([DOCKER_MANIFEST, DOCKER_LIST], "docker/17.09.1")
    with capture_logs() as logs:
        first = [await service.by_tag(rig.route, "3.20", c) for c in (docker_1_9, docker_17_09)]
        again = [await service.by_tag(rig.route, "3.20", c) for c in (docker_1_9, docker_17_09)]
    assert [a.media_type for a in first] == [DOCKER_SCHEMA1_SIGNED, DOCKER_MANIFEST]
    assert [(a.digest, a.data) for a in again] == [(a.digest, a.data) for a in first]
    chosen = (await rig.manifests.by_tag(rig.route, "3.20", CLIENT)).digest
    assert [a.converted_from for a in first] == [chosen, chosen]
    converted = [e for e in logs if e["event"] == "converted"]
    assert [(e["client"], e["media_type"]) for e in converted] == [("schema1", DOCKER_SCHEMA1_SIGNED),
                                                                   ("schema2", DOCKER_MANIFEST)]  # fmt: skip
    assert metrics.conversions.labels("schema1")._value.get() == 1
    assert metrics.conversions.labels("schema2")._value.get() == 1
    rig.upstream.fail_status = 503  # the upstream is down: the conversions come from the store
    for answer in first:
        by_digest = await service.by_digest(rig.route, answer.digest, docker_1_9)
        assert (by_digest.data, by_digest.media_type) == (answer.data, answer.media_type)
