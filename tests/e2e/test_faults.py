"""The fault suite: each case asserts what the client got and what the cache holds after.

Run alone with ``pytest -m faults``.  Failing upstreams are the test double (tests/fakeupstream.py)
where the real registry cannot fail on purpose; the real registry is stopped where it can be;
full and read-only disks are real tmpfs mounts (the suite runs as root, like CI).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import Seeded, push_case, skopeo_copy
from tests.fakeupstream import FakeUpstream
from tests.ocibuild import Blob
from tests.registry import Platproxy, Registry, config_args, request

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
Start = Callable[..., Platproxy]
MIB = 2**20
ALL = {"Accept": UPSTREAM_ACCEPT}


def files(root: Path, sub: str) -> list[Path]:
    return [p for p in (root / sub).rglob("*") if p.is_file()]


def files_soon(root: Path, sub: str, count: int, timeout: float = 10.0) -> list[Path]:
    """``files`` once there are ``count`` of them (a client has its last byte as soon as the digest
    matched; the fsync and rename into the cache follow)."""
    deadline = time.monotonic() + timeout
    while len(found := files(root, sub)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Real small filesystems (tmpfs mounts), unmounted afterwards."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_upstream_down_before_a_request(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg").start()
    push_case(registry, "library/multi:1", seeded.cases["library/multi:1"])
    proxy = platproxy(registry.url, "linux/arm64", config_args(tmp_path, "[cache]\ntag_ttl = 0\n"))
    digest = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)[1]["docker-content-digest"]
    registry.stop()
    started = time.monotonic()
    status, headers, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    assert (status, headers["x-platproxy-cache"], headers["docker-content-digest"]) == (200, "stale", digest)
    assert request(proxy.port, "GET", f"/v2/library/multi/manifests/{digest}", headers=ALL)[0] == 200
    status, _, body = request(proxy.port, "GET", "/v2/library/other/manifests/1", headers=ALL)
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 5  # a refused connection answers at once, no hang
    metrics = request(proxy.port, "GET", "/metrics")[2].decode()
    assert "platproxy_stale_serves_total 1.0" in metrics
    assert proxy.wait_for_log("serving stale tag")


def test_upstream_5xx(platproxy: Start) -> None:
    fake = FakeUpstream(fail_status=503).start()
    try:
        proxy = platproxy(fake.url, "linux/amd64")
        for path in ("/v2/library/x/manifests/1", f"/v2/library/x/blobs/sha256:{'a' * 64}"):
            status, _, body = request(proxy.port, "GET", path, headers=ALL)
            assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert files(proxy.cache_dir, "blobs") == [] and files(proxy.cache_dir, "tmp") == []
    finally:
        fake.stop()


def test_slow_upstream_beyond_the_read_timeout(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream(chunk_delay=1.5).start()
    try:
        digest = fake.add_blob(os.urandom(MIB))
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[limits]\nread_timeout = "0.5s"\n'))
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")
        assert files(proxy.cache_dir, "blobs") == [] and files(proxy.cache_dir, "tmp") == []
    finally:
        fake.stop()


def test_manifest_over_the_size_limit_is_refused(platproxy: Start) -> None:
    fake = FakeUpstream().start()
    try:
        fake.manifests["big"] = (b'{"schemaVersion": 2, "padding": "' + b"x" * (5 * MIB) + b'"}',
                                 "application/vnd.oci.image.manifest.v1+json")  # fmt: skip
        proxy = platproxy(fake.url, "linux/amd64")
        status, _, body = request(proxy.port, "GET", "/v2/library/x/manifests/big", headers=ALL)
        assert status == 413 and json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
        assert files(proxy.cache_dir, "blobs") == []
    finally:
        fake.stop()


def test_concurrent_upstream_fetches_are_bounded(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream(chunk_delay=0.05).start()
    try:
        digests = [fake.add_blob(os.urandom(512 * 1024)) for _ in range(6)]
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, "[limits]\nmax_upstream_fetches = 2\n"))
        procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", f"http://{proxy.address}/v2/library/x/blobs/{d}"])
                 for d in digests]  # fmt: skip
        assert [p.wait(60) for p in procs] == [0] * 6
        assert fake.max_active == 2
        assert len(files_soon(proxy.cache_dir, "blobs", 6)) == 6
    finally:
        fake.stop()


def test_killed_in_the_middle_of_a_fill_then_restarted(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream(chunk_delay=0.02).start()
    try:
        data = os.urandom(4 * MIB)
        digest = fake.add_blob(data)
        cache = tmp_path / "cache"
        proxy = platproxy(fake.url, "linux/amd64", cache=cache)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("GET", f"/v2/library/x/blobs/{digest}")
        response = conn.getresponse()
        assert response.read(256 * 1024)  # the fill is under way
        assert files(cache, "tmp")  # ... into a temporary file
        proxy.stop(signal.SIGKILL)
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            response.read()
        assert files(cache, "blobs") == []  # nothing partial under the digest's name
        restarted = platproxy(fake.url, "linux/amd64", cache=cache)
        assert files(cache, "tmp") == []  # the interrupted fill is gone
        status, _, body = request(restarted.port, "GET", f"/v2/library/x/blobs/{digest}")
        assert status == 200 and body == data
        assert fake.count("GET", digest) == 2  # the fill restarted from the upstream
    finally:
        fake.stop()


def test_cache_disk_full(platproxy: Start, small_disk: Callable[[str], Path]) -> None:
    fake = FakeUpstream().start()
    try:
        small = os.urandom(512 * 1024)
        big = os.urandom(6 * MIB)
        small_digest, big_digest = fake.add_blob(small), fake.add_blob(big)
        proxy = platproxy(fake.url, "linux/amd64", cache=small_disk("4m") / "cache")
        assert request(proxy.port, "GET", f"/v2/library/x/blobs/{small_digest}")[2] == small
        try:
            status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{big_digest}")
            assert status == 507 and "cannot store" in json.loads(body)["errors"][0]["message"]
        except (http.client.IncompleteRead, ConnectionError):
            pass  # the disk filled after the first bytes were sent: the client is cut, never misled
        assert big_digest[7:] not in {p.name for p in files(proxy.cache_dir, "blobs")}
        assert files(proxy.cache_dir, "tmp") == []
        status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{small_digest}")
        assert status == 200 and body == small  # serving of cached content continues
        assert "Traceback" not in proxy.log()
    finally:
        fake.stop()


def test_cache_directory_made_read_only(
    seeded: Seeded, platproxy: Start, small_disk: Callable[[str], Path], tmp_path: Path
) -> None:
    disk = small_disk("64m")
    proxy = platproxy(seeded.registry.url, "linux/arm64", cache=disk / "cache")
    first = skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    # Linux will not remount a filesystem read-only under files open for writing (the tag
    # index), so the cache comes back read-only the way it does after a reboot or an error.
    proxy.stop()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    proxy = platproxy(seeded.registry.url, "linux/arm64", cache=disk / "cache")
    again = skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "again")
    assert again.returncode == 0, again.stderr  # cached content is still served
    status, _, body = request(proxy.port, "GET", "/v2/library/levels/manifests/1", headers=ALL)
    assert status == 507 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    # the index is on disk: a platform nothing in it runs on gets the explained 404, not a 507
    status, _, body = request(proxy.port, "GET", "/v2/platform.linux.mips64le/library/multi/manifests/1",
                              headers=ALL)  # fmt: skip
    assert status == 404 and "runs on" in json.loads(body)["errors"][0]["message"], body
    proxy.stop()
    # a new target whose entry is on disk too (a rule with a feature: its own record) gets it
    rule = '[[clients]]\ncidr = "127.0.0.1/32"\nplatform = "linux/arm64"\nfeatures = ["asimd"]\n'
    proxy = platproxy(seeded.registry.url, "linux/arm64", config_args(tmp_path, rule), cache=disk / "cache")
    status, headers, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    assert status == 200 and headers["docker-content-digest"] == seeded.cases["library/multi:1"].digest_of(
        "linux/arm64/v8"
    )
    assert proxy.wait_for_log("tag record not kept")
    status, _, body = request(proxy.port, "GET", "/readyz")
    assert status == 503 and json.loads(body)["cache"]["writable"] is False
    assert "Traceback" not in proxy.log()


def test_idle_client_connections_are_closed(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream().start()
    try:
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[limits]\nidle_timeout = "1s"\n'))
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("GET", "/v2/")
        assert conn.getresponse().read() == b"{}"
        time.sleep(2.5)
        assert conn.sock is not None and conn.sock.recv(1) == b""  # the server closed it
    finally:
        fake.stop()


def test_a_client_trickling_its_headers_is_cut_off(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream().start()
    try:
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[limits]\nheader_timeout = "1s"\n'))
        slow = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        started = time.monotonic()
        closed = False
        for part in (b"GET /v2/ HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: 1\r\n", b"X-Slow: 2\r\n"):
            try:
                slow.sendall(part)
            except OSError:
                closed = True
                break
            time.sleep(0.4)
        if not closed:
            slow.settimeout(5)
            closed = slow.recv(1) == b""
        assert closed and time.monotonic() - started < 4
        silent = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)  # says nothing at all
        assert silent.recv(1) == b""
        assert request(proxy.port, "GET", "/v2/")[0] == 200  # prompt clients are unaffected
        # a long download is not cut: the timer stops once the request's headers are complete
        digest = fake.add_blob(os.urandom(MIB))
        fake.chunk_delay = 0.1  # 16 chunks: 1.6 s, longer than the header timeout
        status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")
        assert status == 200 and len(body) == MIB
    finally:
        fake.stop()


def test_the_real_registry_killed_mid_transfer(platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg").start()
    blob = Blob(os.urandom(512 * MIB), "application/octet-stream")
    registry.push_blob("library/big", blob)
    try:
        proxy = platproxy(registry.url, "linux/amd64")
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        conn.request("GET", f"/v2/library/big/blobs/{blob.digest}")
        response = conn.getresponse()
        assert response.status == 200 and response.read(1024)
        assert registry.proc is not None
        registry.proc.kill()  # SIGKILL: the upstream vanishes in the middle of the body
        registry.proc.wait()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            response.read()
        assert files(proxy.cache_dir, "blobs") == [] and files(proxy.cache_dir, "tmp") == []
        registry.start()  # the same storage, back again: the fill starts over and completes
        status, _, body = request(proxy.port, "GET", f"/v2/library/big/blobs/{blob.digest}")
        assert status == 200 and len(body) == blob.size
        assert "sha256:" + hashlib.sha256(body).hexdigest() == blob.digest
    finally:
        registry.stop()
