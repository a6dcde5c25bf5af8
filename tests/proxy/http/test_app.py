"""The HTTP edge in one process: the real application (handlers, error mapping, client auth,
health) over aiohttp's test client, in front of an in-process registry.

The end-to-end tests drive the same application as a subprocess with real clients; these pin
the edge's own duties where a failure points straight at a handler.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hostinfo import HostProfile, Platform
from proxy.config import load_config
from proxy.http.app import build_app
from proxy.oci.mediatypes import OCI_MANIFEST, UPSTREAM_ACCEPT
from tests import indexes
from tests.fakeupstream import FakeUpstream

MakeClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def registry() -> Iterator[FakeUpstream]:
    case = indexes.alpine_with_attestations()
    fake = FakeUpstream()
    fake.manifests["3.20"] = (case.top.data, case.top.media_type)
    for blob in case.blobs:
        if blob.media_type == OCI_MANIFEST:
            fake.manifests[blob.digest] = (blob.data, blob.media_type)
        fake.blobs[blob.digest] = blob.data
    fake.start()
    yield fake
    fake.stop()


def app_for(fake: FakeUpstream, tmp_path: Path, **extra: Any) -> web.Application:
    config = load_config(None, {"upstreams": [{"name": "up", "url": fake.url}], "cache.dir": str(tmp_path), **extra})
    return build_app(config, HostProfile(platform=Platform.parse("linux/arm64/v8")))


async def test_a_tag_pull_is_resolved_and_says_so(registry: FakeUpstream, tmp_path: Path,
                                                  aiohttp_client: MakeClient) -> None:  # fmt: skip
    client = await aiohttp_client(app_for(registry, tmp_path))
    resp = await client.get("/v2/library/alpine/manifests/3.20", headers={"Accept": UPSTREAM_ACCEPT})
    body = await resp.read()
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert resp.headers["X-Platproxy-Platform"] == "linux/arm64/v8"
    assert resp.headers["X-Platproxy-Rank"] == "native"
    assert resp.headers["X-Platproxy-Resolved-From"].startswith("sha256:")
    assert resp.headers["Content-Type"] == OCI_MANIFEST
    assert resp.headers["Vary"] == "Accept, User-Agent, X-Platproxy-Resolve, X-Platproxy-Platform"
    again = await client.get("/v2/library/alpine/manifests/3.20",
                             headers={"If-None-Match": resp.headers["ETag"], "Accept": UPSTREAM_ACCEPT})  # fmt: skip
    assert again.status == 304


async def test_a_blob_is_served_whole_and_by_range(registry: FakeUpstream, tmp_path: Path,
                                                   aiohttp_client: MakeClient) -> None:  # fmt: skip
    client = await aiohttp_client(app_for(registry, tmp_path))
    resp = await client.get("/v2/library/alpine/manifests/3.20", headers={"Accept": UPSTREAM_ACCEPT})
    manifest = json.loads(await resp.read())
    layer = manifest["layers"][0]["digest"]
    data = registry.blobs[layer]
    cold = await client.get(f"/v2/library/alpine/blobs/{layer}")
    assert (cold.status, await cold.read()) == (200, data)
    part = await client.get(f"/v2/library/alpine/blobs/{layer}", headers={"Range": "bytes=2-9"})
    assert (part.status, await part.read()) == (206, data[2:10])
    assert part.headers["Content-Range"] == f"bytes 2-9/{len(data)}"
    past = await client.get(f"/v2/library/alpine/blobs/{layer}", headers={"Range": f"bytes={len(data)}-"})
    assert past.status == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
    assert registry.count("GET", f"/blobs/{layer}") == 1  # the hits came from the store


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/UPPER/manifests/x", 400, "NAME_INVALID"),
        ("GET", "/v2/a/manifests/-bad", 404, "MANIFEST_UNKNOWN"),  # conformance: not a tag, not a digest
        ("GET", "/v2/a/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN"),
        ("HEAD", "/v2/a/manifests/.INVALID_MANIFEST_NAME", 404, ""),
        ("GET", "/v2/a/blobs/sha256:abc", 400, "DIGEST_INVALID"),
        ("GET", "/v2/a%20b/manifests/x", 400, "NAME_INVALID"),
        ("PUT", "/v2/a/manifests/x", 405, "UNSUPPORTED"),
        ("POST", "/v2/a/blobs/uploads/", 405, "UNSUPPORTED"),
        ("GET", "/v2/library/alpine/manifests/nope", 404, "MANIFEST_UNKNOWN"),
        ("GET", "/v2/a/tags/list?n=x", 400, "PAGINATION_NUMBER_INVALID"),
        ("GET", "/v2/a/manifests/x?ns=evil.example.com", 404, "NAME_UNKNOWN"),
    ],
)
async def test_bad_requests_get_oci_error_bodies(registry: FakeUpstream, tmp_path: Path, aiohttp_client: MakeClient,
                                                 method: str, path: str, status: int, code: str) -> None:  # fmt: skip
    client = await aiohttp_client(app_for(registry, tmp_path))
    resp = await client.request(method, path)
    assert resp.status == status
    if method != "HEAD":
        assert (await resp.json())["errors"][0]["code"] == code


async def test_client_auth_challenges_then_admits(registry: FakeUpstream, tmp_path: Path,
                                                  aiohttp_client: MakeClient) -> None:  # fmt: skip
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode() + "\n")
    client = await aiohttp_client(app_for(registry, tmp_path / "cache", **{"auth.htpasswd": str(htpasswd)}))
    refused = await client.get("/v2/")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert (await refused.json())["errors"][0]["code"] == "UNAUTHORIZED"
    wrong = await client.get("/v2/", headers={"Authorization": "Basic " + base64.b64encode(b"alice:x").decode()})
    assert wrong.status == 401
    good = "Basic " + base64.b64encode(b"alice:wonderland").decode()
    assert (await client.get("/v2/", headers={"Authorization": good})).status == 200
    assert (await client.get("/healthz")).status == 200  # outside /v2/: no credentials needed


async def test_readyz_reports_the_cache_and_each_upstream(registry: FakeUpstream, tmp_path: Path,
                                                          aiohttp_client: MakeClient) -> None:  # fmt: skip
    client = await aiohttp_client(app_for(registry, tmp_path))
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200
    assert body["cache"]["writable"] is True and body["upstreams"]["up"]["reachable"] is True
    assert "store" not in body  # the file store is the cache directory itself
