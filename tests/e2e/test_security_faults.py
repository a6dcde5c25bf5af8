"""Attacks that need an upstream a real registry cannot be: the test double (``tests/fakeupstream.py``)
serves a hostile index, floods or trickles a blob, or names hostile tags.  Each test fails
without its fix; see ``test_security.py`` for the probes that a real Distribution can drive."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_INDEX, OCI_MANIFEST, UPSTREAM_ACCEPT
from tests.fakeupstream import FakeUpstream, manifest_for
from tests.registry import Platproxy, config_args, request

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
Start = Callable[..., Platproxy]
ALL = {"Accept": UPSTREAM_ACCEPT}


def error_of(body: bytes) -> dict[str, object]:
    doc = json.loads(body)
    assert isinstance(doc["errors"], list) and doc["errors"]
    error: dict[str, object] = doc["errors"][0]
    return error


def test_a_deeply_nested_index_is_a_clear_502(platproxy: Start) -> None:
    depth = 200_000
    nested = b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":' + b"[" * depth
    nested += b"]" * depth + b"}"
    fake = FakeUpstream(manifests={"1": (nested, OCI_INDEX)}).start()
    try:
        proxy = platproxy(fake.url, "linux/amd64")
        status, _, body = request(proxy.port, "GET", "/v2/library/x/manifests/1", headers=ALL)
        assert status == 502 and error_of(body)["code"] == "MANIFEST_INVALID", body[:300]
        assert "RecursionError" not in proxy.log()
    finally:
        fake.stop()


def test_values_from_clients_and_upstreams_are_encoded_never_passed_raw(platproxy: Start) -> None:
    """A client's ``artifactType`` reaches the upstream encoded as it came; an upstream's tag names
    and referrers ``Link`` never become a link to somewhere else."""
    hostile = ['b>; rel="x", <http://evil/&ns=fd', "a", "b", "../../etc", "c"]
    fake = FakeUpstream(tags=hostile, referrers_link='<http://evil.example/v2/x>; rel="next"').start()
    try:
        proxy = platproxy(fake.url, "linux/amd64")
        digest = "sha256:" + "a" * 64
        status, headers, _ = request(proxy.port, "GET", f"/v2/library/x/referrers/{digest}?artifactType=a%26n%3D1")
        assert status == 200 and "link" not in headers
        sent = [s.path for s in fake.seen if "/referrers/" in s.path]
        assert sent == [f"/v2/library/x/referrers/{digest}?artifactType=a%26n%3D1"], sent
        status, headers, body = request(proxy.port, "GET", "/v2/library/x/tags/list?n=2")
        assert status == 200 and json.loads(body)["tags"] == ["a", "b"]  # the invalid names are dropped
        assert headers["link"] == '</v2/library/x/tags/list?n=2&last=b>; rel="next"'
        status, headers, body = request(proxy.port, "GET", "/v2/library/x/tags/list?n=1&last=b")
        assert json.loads(body)["tags"] == ["c"] and "evil" not in headers.get("link", "")
    finally:
        fake.stop()


def test_a_fill_stops_at_the_descriptors_size(platproxy: Start) -> None:
    """A chunked body that goes on past the size the manifest gave: cut there (it staged 200 MiB
    for a 400 KB blob before), nothing kept, every client cut.  A small blob (fetched whole, not
    by a fill) that does the same is a 502, with nothing kept either."""
    fake = FakeUpstream(chunked=True, flood=200 * 2**20).start()
    try:
        layer = fake.add_blob(os.urandom(400_000))
        thin = fake.add_blob(os.urandom(20_000))
        config = fake.add_blob(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
        manifest = manifest_for([(layer, 400_000), (thin, 20_000)], (config, len(fake.blobs[config])))
        fake.manifests["1"] = (manifest, OCI_MANIFEST)
        proxy = platproxy(fake.url, "linux/amd64")
        assert request(proxy.port, "GET", "/v2/library/x/manifests/1", headers=ALL)[0] == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            request(proxy.port, "GET", f"/v2/library/x/blobs/{layer}")
        time.sleep(0.5)
        assert fake.sent_bytes < 40 * 2**20, fake.sent_bytes  # the reader stopped long before the end
        assert not list(proxy.cache_dir.joinpath("blobs").rglob(layer.split(":")[1]))
        assert proxy.wait_for_log("longer than 400000 bytes")
        status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{thin}")
        assert status == 502 and b"more than the manifest's 20000 bytes" in body
        assert not list(proxy.cache_dir.joinpath("blobs").rglob(thin.split(":")[1]))
        assert proxy.wait_for_log("longer than 20000 bytes")
    finally:
        fake.stop()


def test_a_fill_without_a_known_size_stops_at_max_blob_size(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream(chunked=True, flood=50 * 2**20).start()
    try:
        blob = fake.add_blob(os.urandom(100_000))
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[limits]\nmax_blob_size = "1MiB"\n'))
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            request(proxy.port, "GET", f"/v2/library/x/blobs/{blob}")
        assert proxy.wait_for_log("longer than 1048576 bytes")
    finally:
        fake.stop()


def test_a_trickling_upstream_is_cut_after_a_window(platproxy: Start, tmp_path: Path) -> None:
    """One byte every 1.5 s keeps every read under a 2 s read_timeout; min_fill_rate cuts it
    after about one window instead of holding the client for the whole body."""
    fake = FakeUpstream(trickle=1.5).start()
    try:
        blob = fake.add_blob(os.urandom(40))
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[limits]\nread_timeout = "2s"\n'))
        started = time.monotonic()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            request(proxy.port, "GET", f"/v2/library/x/blobs/{blob}")
        assert time.monotonic() - started < 10  # 40 bytes at this pace would take 60 s
        assert proxy.wait_for_log("under min_fill_rate")
        assert not list(proxy.cache_dir.joinpath("blobs").rglob(blob.split(":")[1]))
    finally:
        fake.stop()
