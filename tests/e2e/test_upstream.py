"""End to end, the upstream side: auth (token, Basic), TLS verification, rate limits, and
credentials never leaving the upstream's host.  The upstreams are the test double, since a
real registry cannot be told to redirect elsewhere or announce a foreign token realm."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy, config_args, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
ALL = {"Accept": UPSTREAM_ACCEPT}


@pytest.mark.faults
def test_rate_limit_is_passed_on(platproxy: Start) -> None:
    fake = FakeUpstream(rate_limited=True).start()
    try:
        proxy = platproxy(fake.url, "linux/amd64")
        status, headers, body = request(proxy.port, "GET", "/v2/library/x/manifests/1", headers=ALL)
        assert status == 429 and headers["retry-after"] == "42"
        assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert cache_files(proxy) == []
    finally:
        fake.stop()


@contextmanager
def behind_a_cdn(realm: FakeUpstream, data: bytes) -> Iterator[tuple[FakeUpstream, FakeUpstream, FakeUpstream, str]]:
    """An upstream whose blobs redirect to a CDN host and whose token realm (``realm``) is on a
    foreign domain (``localhost`` against the upstream's ``127.0.0.1``), holding ``data``."""
    cdn = FakeUpstream().start()
    realm.start()
    upstream = FakeUpstream(redirect_blobs_to=f"http://localhost:{cdn.port}",
                            token_realm=f"http://localhost:{realm.port}/token").start()  # fmt: skip
    try:
        digest = upstream.add_blob(data)
        cdn.add_blob(data)
        yield upstream, cdn, realm, digest
    finally:
        for server in (upstream, cdn, realm):
            server.stop()


@pytest.mark.faults
def test_credentials_never_leave_the_upstream_host(platproxy: Start, tmp_path: Path) -> None:
    data = b"layer bytes" * 1000
    with behind_a_cdn(FakeUpstream(), data) as (upstream, cdn, realm, digest):
        config = f'[[upstream]]\nname = "fake"\nurl = "{upstream.url}"\nusername = "user"\npassword = "s3cret"\n'
        proxy = platproxy("", "linux/amd64", config_args(tmp_path, config))
        status, _, body = request(proxy.port, "GET", f"/v2/fake/library/x/blobs/{digest}")
        assert status == 200 and body == data
        assert realm.seen and all("Authorization" not in s.headers for s in realm.seen)
        assert cdn.seen and all("Authorization" not in s.headers for s in cdn.seen)
        assert cache_files(proxy) == [digest]  # the blob, verified, and nothing else
        assert "s3cret" not in proxy.log()


@pytest.mark.faults
def test_credentials_never_follow_a_redirect_to_another_port_of_the_same_host(platproxy: Start, tmp_path: Path) -> None:
    """Credentials belong to an origin (scheme, host, port): a redirect to another port of the
    upstream's own address is another server, and gets no ``Authorization``."""
    data = b"layer bytes" * 1000
    sink = FakeUpstream().start()
    upstream = FakeUpstream(basic_auth="user:s3cret", redirect_blobs_to=f"http://127.0.0.1:{sink.port}").start()
    try:
        digest = upstream.add_blob(data)
        sink.add_blob(data)
        config = f'[[upstream]]\nname = "fake"\nurl = "{upstream.url}"\nusername = "user"\npassword = "s3cret"\n'
        proxy = platproxy("", "linux/amd64", config_args(tmp_path, config))
        status, _, body = request(proxy.port, "GET", f"/v2/fake/library/x/blobs/{digest}")
        assert status == 200 and body == data
        assert any("Authorization" in s.headers for s in upstream.seen)  # the upstream's own origin: yes
        assert sink.seen and all("Authorization" not in s.headers for s in sink.seen), sink.seen
    finally:
        upstream.stop()
        sink.stop()


def test_a_clients_own_credentials_never_reach_a_redirect_host_or_a_foreign_realm(
    platproxy: Start, tmp_path: Path
) -> None:
    """``auth = "passthrough"``: the client's token goes to the upstream's host only; a token
    service on another domain is named to the client directly and never relayed to."""
    data = b"private layer" * 1000
    with behind_a_cdn(FakeUpstream(token_login="user:s3cret"), data) as (upstream, cdn, realm, digest):
        config = f'[[upstream]]\nname = "fake"\nurl = "{upstream.url}"\nauth = "passthrough"\n'
        proxy = platproxy("", "linux/amd64", config_args(tmp_path, config))
        status, headers, _ = request(proxy.port, "GET", f"/v2/fake/team/x/blobs/{digest}")
        assert status == 401
        assert headers["www-authenticate"].startswith(f'Bearer realm="http://localhost:{realm.port}/token"')
        assert 'scope="repository:team/x:pull"' in headers["www-authenticate"]  # the upstream's name for it
        status, _, _ = request(proxy.port, "GET", "/auth/token?scope=repository:fake/team/x:pull", None,
                               {"Authorization": "Basic dXNlcjpzM2NyZXQ="})  # fmt: skip
        assert status == 404  # not relayed: the client asks that service itself
        token = {"Authorization": "Bearer good-token"}
        status, _, body = request(proxy.port, "GET", f"/v2/fake/team/x/blobs/{digest}", None, token)
        assert status == 200 and body == data
        assert any(s.headers.get("Authorization") == "Bearer good-token" for s in upstream.seen)
        assert all("Authorization" not in s.headers for s in realm.seen)
        assert cdn.seen and all("Authorization" not in s.headers for s in cdn.seen)
        assert "good-token" not in proxy.log() and "dXNlcjpzM2NyZXQ" not in proxy.log()


def cache_files(proxy: Platproxy) -> list[str]:
    """Digests of the content files in the cache, and any temporary file by its name, once fills
    in flight have settled (a client can have its bytes before the file is synced into place)."""
    deadline = time.monotonic() + 5
    while any(proxy.cache_dir.joinpath("tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    blobs = [f"sha256:{p.name}" for p in proxy.cache_dir.joinpath("blobs").glob("*/*/*")]
    return blobs + [p.name for p in proxy.cache_dir.joinpath("tmp").iterdir()]


def test_token_is_cached_per_scope_and_same_domain_realm_gets_credentials(platproxy: Start, tmp_path: Path) -> None:
    upstream = FakeUpstream()
    upstream.token_realm = f"{upstream.url}/token"  # the upstream's own host: credentials allowed
    upstream.start()
    try:
        blobs = [upstream.add_blob(bytes([i]) * 1000) for i in range(3)]
        config = f'[[upstream]]\nname = "fake"\nurl = "{upstream.url}"\nusername = "user"\npassword = "s3cret"\n'
        proxy = platproxy("", "linux/amd64", config_args(tmp_path, config))
        for digest in blobs:
            assert request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")[0] == 200
        token_requests = [s for s in upstream.seen if s.path.startswith("/token")]
        assert len(token_requests) == 1  # one scope, one token, reused
        assert token_requests[0].headers["Authorization"].startswith("Basic ")
        assert "scope=repository:library/x:pull" in token_requests[0].path
    finally:
        upstream.stop()


def test_basic_auth_upstream(platproxy: Start, tmp_path: Path) -> None:
    upstream = FakeUpstream(basic_auth="user:s3cret").start()
    try:
        digest = upstream.add_blob(b"basic" * 100)
        config = f'[[upstream]]\nname = "fake"\nurl = "{upstream.url}"\nusername = "user"\npassword = "s3cret"\n'
        proxy = platproxy("", "linux/amd64", config_args(tmp_path, config))
        status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")
        assert status == 200 and body == b"basic" * 100
        anonymous = platproxy(upstream.url, "linux/amd64")
        assert request(anonymous.port, "GET", f"/v2/library/x/blobs/{digest}")[0] == 403
    finally:
        upstream.stop()


@pytest.mark.faults
def test_tls_upstreams_are_verified(platproxy: Start, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    fake = FakeUpstream(ssl_context=server_context).start()
    try:
        digest = fake.add_blob(b"tls" * 1000)
        untrusting = platproxy(fake.url, "linux/amd64")
        status, _, body = request(untrusting.port, "GET", f"/v2/library/x/blobs/{digest}")
        assert status == 503 and "SSL" in json.loads(body)["errors"][0]["detail"]["error"].upper()
        assert fake.count("GET", digest) == 0 and cache_files(untrusting) == []
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        trusting = platproxy(fake.url, "linux/amd64", env={"SSL_CERT_FILE": str(ca_file)})
        status, _, body = request(trusting.port, "GET", f"/v2/library/x/blobs/{digest}")
        assert status == 200 and body == b"tls" * 1000
    finally:
        fake.stop()
