"""Attacks that need an upstream a real registry cannot be: the test double (``tests/fakeupstream.py``)
serves a hostile index, floods or trickles a blob, or names hostile tags.  Each test fails
without its fix; see ``test_security.py`` for the probes that a real Distribution can drive."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from proxy.oci.mediatypes import OCI_INDEX, UPSTREAM_ACCEPT
from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy, request

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
