"""The mirror probed as an attacker would: no client shapes another client's answer.

Each test here reproduces one defect found by probing a running platproxy in front of a real
Distribution (the cache as an oracle across upstreams and repositories, one client's target
reaching another's answer, a header any client may send, limits before authentication), and
fails without its fix.  Faults a real registry cannot produce (nested indexes, floods,
trickles, hostile tag names) are in ``test_security_faults.py`` with the test double.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, INDEX_TYPES, OCI_MANIFEST
from tests.conftest import Seeded, skopeo_copy
from tests.indexes import Case
from tests.nginx import CachingNginx
from tests.ocibuild import image, index, sha256
from tests.registry import Platproxy, Registry, cli, config_args, push_case, request
from tests.tokenserver import USERS, TokenUpstream, passthrough_config

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def features_case() -> Case:
    """amd64 twice: a build that needs AVX-512 and a baseline one."""
    named = {
        "avx512": image({"architecture": "amd64", "os": "linux", "features": ["avx512f"]}, label="avx512"),
        "plain": image({"architecture": "amd64", "os": "linux"}, label="plain"),
    }
    return Case(index(list(named.values())), [b for i in named.values() for b in (i.manifest, *i.blobs())], named)


FEATURE_RULE = """
[[clients]]
cidr = "127.0.0.2/32"
platform = "linux/amd64"
features = ["avx512f"]
"""


@pytest.mark.parametrize("rule_first", [True, False])
def test_one_clients_cpu_features_never_reach_anothers_answer(
    platproxy: Start, tmp_path: Path, rule_first: bool
) -> None:
    """A ``[[clients]]`` rule with ``features`` and a selector client of the same platform
    without them are two targets: each gets its own build, whichever pulls first."""
    registry = Registry(tmp_path / "registry").start()
    try:
        case = features_case()
        for tag in ("1", "2"):
            push_case(registry, f"library/feat:{tag}", case)
        proxy = platproxy(registry.url, "linux/amd64", config_args(tmp_path, FEATURE_RULE))
        accept = {"Accept": OCI_MANIFEST}

        def by_rule(tag: str) -> str:
            status, headers, _ = request(proxy.port, "GET", f"/v2/library/feat/manifests/{tag}", headers=accept,
                                         source="127.0.0.2")  # fmt: skip
            assert status == 200
            return headers["docker-content-digest"]

        def by_selector(tag: str) -> str:
            path = f"/v2/platform.linux.amd64/library/feat/manifests/{tag}"
            status, headers, _ = request(proxy.port, "GET", path, headers=accept)
            assert status == 200
            return headers["docker-content-digest"]

        first, second = (by_rule, by_selector) if rule_first else (by_selector, by_rule)
        got = {first: first("1"), second: second("2")}
        assert got[by_rule] == case.digest_of("avx512")
        assert got[by_selector] == case.digest_of("plain")
    finally:
        registry.stop()


def test_a_password_over_72_bytes_is_a_401_before_login(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode() + "\n")
    proxy = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, f'[auth]\nhtpasswd = "{htpasswd}"\n'))
    for user in ("alice", "nobody"):
        login = base64.b64encode(f"{user}:{'x' * 100}".encode()).decode()
        status, headers, body = request(proxy.port, "GET", "/v2/", headers={"Authorization": f"Basic {login}"})
        assert status == 401 and json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED", body
        assert headers["www-authenticate"] == 'Basic realm="platproxy"'
    login = base64.b64encode(b"alice:wonderland").decode()
    assert request(proxy.port, "GET", "/v2/", headers={"Authorization": f"Basic {login}"})[0] == 200


def raw_exchange(port: int, data: bytes, source: str = "") -> bytes:
    """Send ``data`` as it is and read until the server closes or 5 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0) if source else None) as s:
        s.sendall(data)
        got = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                got += chunk
        return got


def test_a_malformed_request_line_is_one_json_log_line_and_an_oci_error(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/amd64")
    answer = raw_exchange(proxy.port, b"GET /v2/\x00x HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400" and b"application/json" in head, answer[:300]
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    proxy.wait_for_log('"event": "bad request"')
    for line in proxy.log().splitlines():
        if not line.startswith("platproxy: "):  # the start banner
            json.loads(line)  # every log line is one JSON document: no traceback, no plain text


def test_headers_are_bounded_before_authentication(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    """Long header lines get an OCI 400; many connections with unfinished headers from one address
    are cut past the limit and memory stays flat (it grew by 600 MiB before)."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:$2b$04$" + "a" * 53 + "\n")
    proxy = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, f'[auth]\nhtpasswd = "{htpasswd}"\n'))
    long_line = b"GET /v2/ HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"
    head, _, body = raw_exchange(proxy.port, long_line).partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400" and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    many = b"GET /v2/ HTTP/1.1\r\n" + b"".join(b"X-%d: b\r\n" % i for i in range(100)) + b"\r\n"
    assert raw_exchange(proxy.port, many).split(b" ")[1] == b"400"
    before = rss_mib(proxy_pid(proxy))
    held: list[socket.socket] = []
    try:
        for _ in range(40):  # each begins a request with 60 header lines of 8 KiB and never ends it
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5, source_address=("127.0.0.5", 0))
            held.append(s)
            with contextlib.suppress(OSError):
                s.sendall(b"GET /v2/ HTTP/1.1\r\n" + b"".join(b"X-%d: " % i + b"a" * 8000 + b"\r\n" for i in range(60)))
        time.sleep(0.5)
        closed = 0
        for s in held:
            s.settimeout(0.2)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= 40 - 32, closed  # past max_partial_per_client (32), the server closed them
        assert rss_mib(proxy_pid(proxy)) - before < 60, (before, rss_mib(proxy_pid(proxy)))
        # a whole request from the same address is still served
        assert request(proxy.port, "GET", "/v2/", source="127.0.0.5")[0] == 401
        shown = cli("config", "check").stderr
        assert "limits before authentication: lines of 8190 bytes, 64 headers, 32 unfinished" in shown
    finally:
        for s in held:
            s.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def proxy_pid(proxy: Platproxy) -> int:
    assert proxy.proc is not None
    return proxy.proc.pid


DOCKER_1709 = ([DOCKER_LIST, DOCKER_MANIFEST, "application/json", DOCKER_SCHEMA1_SIGNED],
               "docker/17.09.1-ce go/go1.8.3 git-commit/19e2cf6 kernel/6.1.0 os/linux arch/amd64")  # fmt: skip


def docker_agent(arch: str) -> str:
    return f"docker/20.10.24 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/{arch}"


def test_no_client_shapes_what_a_shared_cache_in_front_serves_others(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    """A real nginx ``proxy_cache`` in front: a client's ``X-Platproxy-Resolve: none`` (meant for
    child proxies) is ignored and named in ``Vary``; a 404 for one platform varies by
    ``User-Agent``, so another platform's client never gets it from the cache."""
    registry = Registry(tmp_path / "registry").start()
    try:
        push_case(registry, "library/pair:1", features_case())  # amd64 only: nothing for mips64le
        proxy = platproxy(registry.url, "linux/amd64")
        nginx = CachingNginx(tmp_path / "nginx", proxy.address).start()
        try:
            accept, agent = DOCKER_1709
            headers = [*(("Accept", a) for a in accept), ("User-Agent", agent)]
            path = "/v2/library/multi/manifests/1?ns=" + seeded.registry.url.split("//")[1]
            multi = platproxy(seeded.registry.url, "linux/amd64")
            front = CachingNginx(tmp_path / "nginx-multi", multi.address).start()
            try:
                status, got, _ = request(front.port, "GET", path, headers=[*headers, ("X-Platproxy-Resolve", "none")])
                assert status == 200 and got["content-type"] not in INDEX_TYPES, got
                assert "X-Platproxy-Resolve" in got["vary"]
                status, got, _ = request(front.port, "GET", path, headers=headers)  # the victim, same URI
                assert status == 200 and got["content-type"] == DOCKER_MANIFEST, got
                assert multi.wait_for_log("X-Platproxy-Resolve ignored")
            finally:
                front.stop()
            mips = [("Accept", OCI_MANIFEST), ("User-Agent", docker_agent("mips64le"))]
            status, got, _ = request(nginx.port, "GET", "/v2/library/pair/manifests/1", headers=mips)
            assert status == 404 and got["vary"] == "Accept, User-Agent, X-Platproxy-Resolve, X-Platproxy-Platform"
            amd64 = [("Accept", OCI_MANIFEST), ("User-Agent", docker_agent("amd64"))]
            status, got, _ = request(nginx.port, "GET", "/v2/library/pair/manifests/1", headers=amd64)
            assert status == 200 and got["docker-content-digest"] == features_case().digest_of("plain")
        finally:
            nginx.stop()
    finally:
        registry.stop()


def test_the_passthrough_cache_answers_through_no_other_upstream(
    seeded: Seeded, token_upstream: TokenUpstream, platproxy: Start, tmp_path: Path
) -> None:
    """The layout docs/private-images.md describes: a private upstream (``auth = "passthrough"``) beside a public one.
    What alice pulled privately is on disk; nobody gets it by naming the other upstream (``?ns=``
    or the path prefix) and a repository that does not hold it."""
    public = seeded.registry.url.split("//")[1]
    config = (
        passthrough_config(token_upstream.registry)
        + f'[[upstream]]\nname = "{public}"\naliases = ["public.test"]\nurl = "{seeded.registry.url}"\n'
    )
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, config))
    done = skopeo_copy(f"{proxy.address}/private.test/team-a/app:1", tmp_path / "a", "--src-creds",
                       f"alice:{USERS['alice'][0]}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    image = seeded.cases["library/multi:1"].images["linux/arm64/v8"]
    layer, config_blob = image.layers[0].digest, image.config.digest
    probes = [("GET", f"/v2/x/y/blobs/{layer}?ns={public}"), ("HEAD", f"/v2/x/y/blobs/{layer}?ns={public}"),
              ("GET", f"/v2/x/y/blobs/{config_blob}?ns={public}"), ("GET", f"/v2/public.test/x/y/blobs/{layer}"),
              ("GET", f"/v2/x/y/manifests/{image.manifest.digest}?ns={public}")]  # fmt: skip
    for method, path in probes:
        status, _, body = request(proxy.port, method, path, headers={"Accept": OCI_MANIFEST})
        assert status == 404, (method, path, status, body[:300])
        if method == "GET":
            assert json.loads(body)["errors"][0]["code"] in ("BLOB_UNKNOWN", "MANIFEST_UNKNOWN")
    assert '"cache": "hit"' not in proxy.log().split("alice")[-1]  # nothing of hers served from the cache since
    # the public upstream really holds the same layer in library/multi: that name gets it, after asking
    status, _, body = request(proxy.port, "GET", f"/v2/library/multi/blobs/{layer}?ns={public}")
    assert status == 200 and sha256(body) == layer


def test_a_denied_image_is_not_served_under_another_repositorys_name(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    """``[[policy]]`` denies ``library/multi`` after it was cached; ``library/big`` does not hold its
    layer upstream, so asking for it there is a 404, never the cached bytes."""
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    done = skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "multi")
    assert done.returncode == 0, done.stderr
    proxy.stop()
    rules = '[[policy]]\nrepository = "library/multi"\naction = "deny"\n'
    denied = platproxy(seeded.registry.url, "linux/arm64", config_args(tmp_path, rules), cache=proxy.cache_dir)
    layer = seeded.cases["library/multi:1"].images["linux/arm64/v8"].layers[0].digest
    assert request(denied.port, "GET", f"/v2/library/multi/blobs/{layer}")[0] == 403
    status, _, body = request(denied.port, "GET", f"/v2/library/big/blobs/{layer}")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN", body[:300]
