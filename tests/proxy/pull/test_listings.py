"""Tag listings and referrers, decided in the pull layer (the handler only paginates): the
upstream's answer, the kept tags when it fails, an empty index where it has no referrers API.
Over the in-memory store, against the test double (``tests/fakeupstream.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hostinfo import HostProfile, Platform
from proxy.config import UpstreamConfig, load_config
from proxy.errors import UpstreamFailed
from proxy.oci.mediatypes import OCI_INDEX
from proxy.pull.manifests import ManifestService
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.storage.memory import MemoryStore
from proxy.storage.records import TagRecord
from proxy.storage.tagindex import TagIndex
from proxy.storage.tags import TagRecords
from tests.fakeupstream import FakeUpstream


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[ManifestService, FakeUpstream, Route]]:
    fake = FakeUpstream(tags=["b", "a", "not a tag!", "a"]).start()
    config = load_config(None, {"upstreams": [{"name": "up", "url": fake.url}]})
    session = aiohttp.ClientSession()
    up = Upstream(UpstreamConfig(name="up", url=fake.url), config.limits, session=session)
    tags = TagRecords(TagIndex(tmp_path / "index.db"))
    host = HostProfile(platform=Platform.parse("linux/amd64"))
    yield (
        ManifestService(config, MemoryStore(tmp_path / "tmp"), tags, {"up": up}, host),
        fake,
        Route(config.upstreams[0], "library/x"),
    )
    await session.close()
    tags.close()
    fake.stop()


async def test_tags_are_the_upstreams_valid_names_sorted_else_the_kept_ones(
    service: tuple[ManifestService, FakeUpstream, Route],
) -> None:
    manifests, fake, route = service
    assert await manifests.tag_names(route) == ["a", "b"]
    fake.fail_status = 503
    with pytest.raises(UpstreamFailed):
        await manifests.tag_names(route)  # nothing kept: the upstream's error
    record = TagRecord("up", "library/x", "kept", "-", "sha256:" + "1" * 64, OCI_INDEX, "sha256:" + "1" * 64, None,
                       "", "", "", 0.0, 0.0)  # fmt: skip
    await manifests.tags.keep(record)
    assert await manifests.tag_names(route) == ["kept"]


async def test_referrers_pass_the_artifact_type_encoded_and_never_404(
    service: tuple[ManifestService, FakeUpstream, Route],
) -> None:
    manifests, fake, route = service
    digest = "sha256:" + "a" * 64
    data, headers = await manifests.referrers(route, digest, "a&n=1")
    assert json.loads(data)["manifests"] == [] and headers["Content-Type"].startswith(OCI_INDEX)
    sent = [s.path for s in fake.seen if "/referrers/" in s.path]
    assert sent == [f"/v2/library/x/referrers/{digest}?artifactType=a%26n%3D1"]
    fake.fail_status = 404
    data, headers = await manifests.referrers(route, digest, "")
    assert json.loads(data) == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
