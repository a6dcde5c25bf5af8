"""The disk budget against real pulls: within max_size, never mid-stream, never the offline copy."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Seeded, push_case, skopeo_copy
from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy, Registry, config_args, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
MIB = 2**20


def stored(proxy: Platproxy) -> dict[str, int]:
    return {f"sha256:{p.name}": p.stat().st_size for p in proxy.cache_dir.joinpath("blobs").glob("*/*/*")}


def test_cache_stays_under_max_size_and_every_pull_is_correct(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream().start()
    try:
        blobs = {fake.add_blob(os.urandom(MIB)): i for i in range(8)}
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[cache]\nmax_size = "3MiB"\n'))
        for digest in blobs:
            status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")
            assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == digest
            assert sum(stored(proxy).values()) <= 3 * MIB
        deadline = time.monotonic() + 5  # a client can finish before its blob is synced into place
        while len(stored(proxy)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(stored(proxy)) == 3 and set(stored(proxy)) == set(list(blobs)[-3:])
        text = request(proxy.port, "GET", "/metrics")[2].decode()
        assert "platproxy_evictions_total 5.0" in text
    finally:
        fake.stop()


def test_a_blob_being_streamed_is_never_evicted_mid_stream(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream().start()
    try:
        big = os.urandom(48 * MIB)  # far more than the socket buffers: the send blocks while we do not read
        big_digest = fake.add_blob(big)
        others = [fake.add_blob(os.urandom(4 * MIB)) for _ in range(3)]
        proxy = platproxy(fake.url, "linux/amd64", config_args(tmp_path, '[cache]\nmax_size = "54MiB"\n'))
        assert request(proxy.port, "GET", f"/v2/library/x/blobs/{big_digest}")[0] == 200  # cached now, oldest
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.settimeout(30)
        sock.sendall(f"GET /v2/library/x/blobs/{big_digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = bytearray(sock.recv(65536))  # the send has started and is now held back by us
        time.sleep(0.2)
        for digest in others:  # 48 + 12 MiB > 54 MiB: the oldest, the streaming one, would go first
            assert request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")[0] == 200
        assert big_digest in stored(proxy)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
            if received.endswith(big[-64:]):
                break
        sock.close()
        body = bytes(received).split(b"\r\n\r\n", 1)[1]
        assert body == big
        time.sleep(0.2)
        assert request(proxy.port, "GET", f"/v2/library/x/blobs/{others[0]}")[0] == 200
        fresh = fake.add_blob(os.urandom(4 * MIB))
        assert request(proxy.port, "GET", f"/v2/library/x/blobs/{fresh}")[0] == 200
        assert big_digest not in stored(proxy)  # once the stream is over it may go
    finally:
        fake.stop()


def test_the_only_copy_is_kept_while_its_upstream_is_unreachable(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "reg").start()
    push_case(registry, "library/multi:1", seeded.cases["library/multi:1"])
    fake = FakeUpstream().start()
    try:
        text = (f'[[upstream]]\nname = "reg"\nurl = "{registry.url}"\n[[upstream]]\nname = "fake"\nurl = "{fake.url}"\n'
                '[cache]\nmax_size = "2MiB"\ntag_ttl = 0\n')  # fmt: skip
        proxy = platproxy("", "linux/arm64", config_args(tmp_path, text))
        first = skopeo_copy(f"{proxy.address}/reg/library/multi:1", tmp_path / "first")
        assert first.returncode == 0, first.stderr
        image_files = set(stored(proxy))
        registry.stop()
        assert request(proxy.port, "GET", "/v2/reg/library/multi/manifests/1")[0] == 200  # stale: reg is down
        for _ in range(4):
            digest = fake.add_blob(os.urandom(MIB))
            assert request(proxy.port, "GET", f"/v2/fake/x/blobs/{digest}")[0] == 200
        assert image_files <= set(stored(proxy))
        again = skopeo_copy(f"{proxy.address}/reg/library/multi:1", tmp_path / "again")
        assert again.returncode == 0, again.stderr
    finally:
        fake.stop()
        registry.stop()


def cache_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "cache", *args], capture_output=True, text=True, timeout=60
    )


def test_cache_ls_gc_rm(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    for image in ("multi", "levels"):
        assert skopeo_copy(f"{proxy.address}/library/{image}:1", tmp_path / image).returncode == 0
    where = ("--cache-dir", str(proxy.cache_dir))
    listing = json.loads(cache_cli("ls", *where, "--json").stdout)  # options after the subcommand, as in serve
    before_subcommand = json.loads(cache_cli(*where, "ls", "--json").stdout)
    assert [dict(r, age_s=0) for r in listing["tags"]] == [dict(r, age_s=0) for r in before_subcommand["tags"]]
    assert listing["cache"] == str(proxy.cache_dir)
    by_image = {row["image"].split("/", 1)[1]: row for row in listing["tags"]}
    multi = by_image["library/multi:1"]
    arm = seeded.cases["library/multi:1"].images["linux/arm64/v8"]
    assert multi["platform"] == "linux/arm64/v8" and multi["label"] == "native"
    assert multi["digest"] == arm.manifest.digest
    assert multi["index"] == seeded.cases["library/multi:1"].top.digest and multi["age_s"] >= 0
    assert multi["size"] == sum(len(b.data) for b in (arm.manifest, arm.config, *arm.layers)) and multi["complete"]
    assert "library/levels:1" in by_image
    text = cache_cli("ls", *where).stdout
    assert text.startswith(f"cache {proxy.cache_dir}: 2 tag record(s), ")
    assert "RANK LABEL" in text and "native" in text and "linux/arm64/v8" in text and "from sha256:" in text
    assert "[" not in text and "{" not in text
    before = set(stored(proxy))
    dry = cache_cli("rm", *where, f"127.0.0.1:{seeded.registry.port}/library/multi:1", "--dry-run")
    assert (
        dry.returncode == 0
        and "dry run: nothing changed" in dry.stdout
        and "would remove 1 tag record(s)" in dry.stdout
    )
    planned = json.loads(cache_cli("gc", *where, "--max-size", "1", "--dry-run", "--json").stdout)
    assert planned["dry_run"] and planned["would_evict"] == len(before) and planned["would_free_bytes"] > 0
    assert set(stored(proxy)) == before  # dry runs change nothing
    assert "applies to a bucket" in cache_cli("gc", *where, "--max-age", "1d").stderr
    done = cache_cli("rm", *where, f"127.0.0.1:{seeded.registry.port}/library/multi:1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cache {proxy.cache_dir}:") and "removed " in done.stdout and "{" not in done.stdout
    removed = before - set(stored(proxy))
    assert {arm.manifest.digest, arm.config.digest, *(layer.digest for layer in arm.layers)} <= removed
    assert not {b.digest for b in seeded.cases["library/levels:1"].blobs} & removed
    assert "library/multi:1" not in cache_cli("ls", *where).stdout
    done = cache_cli("gc", *where, "--max-size", "1", "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["total_bytes"] <= 1 and result["cache"] == str(proxy.cache_dir)
    assert [name.split("/", 1)[1] for name in result["tags_dropped"]] == ["library/levels:1"]
    assert json.loads(cache_cli("ls", *where, "--json").stdout)["tags"] == []  # no record outlives its content
    assert cache_cli("--cache-dir", str(tmp_path / "nothing-here"), "ls").returncode == 2
    bad = cache_cli("rm", *where, "Bad Name")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert cache_cli("gc", *where, "--max-size", "-5").stderr.startswith(
        "platproxy cache gc: --max-size -5: expected a size"
    )


Revalidating = tuple[Registry, Platproxy]


@pytest.fixture
def revalidating(seeded: Seeded, platproxy: Start, tmp_path: Path) -> Iterator[Revalidating]:
    """A registry of its own (the test stops it) and a platproxy that asks it about every tag pull."""
    registry = Registry(tmp_path / "reg").start()
    push_case(registry, "library/multi:1", seeded.cases["library/multi:1"])
    try:
        yield registry, platproxy(registry.url, "linux/arm64", config_args(tmp_path, "[cache]\ntag_ttl = 0\n"))
    finally:
        registry.stop()


def test_after_gc_an_offline_tag_is_refused_and_the_log_says_so(revalidating: Revalidating, tmp_path: Path) -> None:
    registry, proxy = revalidating
    assert skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "a").returncode == 0
    done = cache_cli("gc", "--cache-dir", str(proxy.cache_dir), "--max-size", "1")
    assert done.returncode == 0 and "TAG RECORDS DROPPED" in done.stdout
    assert "dropped 127.0.0.1:" in done.stdout and "library/multi:1 (its content was evicted" in done.stdout
    registry.stop()
    status, _, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1")
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert "serving stale tag" not in proxy.log()  # the record went with its content: nothing claims a serve


def test_a_stale_record_whose_manifest_vanished_is_logged_as_not_served(
    seeded: Seeded, revalidating: Revalidating
) -> None:
    registry, proxy = revalidating
    oci = {"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"}
    assert request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=oci)[0] == 200
    chosen = seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
    algorithm, encoded = chosen.split(":")
    (proxy.cache_dir / "blobs" / algorithm / encoded[:2] / encoded).unlink()  # lost behind its back
    registry.stop()
    status, _, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=oci)
    assert status == 503, proxy.log()[-3000:]
    assert proxy.wait_for_log("stale tag not served: its manifest is no longer cached") == 1
    assert "serving stale tag" not in proxy.log()


def test_cache_ls_names_an_index_kept_unresolved_as_such(seeded: Seeded, platproxy: Start) -> None:
    """``platform.all`` keeps the index itself: ``cache ls`` says so (it said "(not a list)")."""
    from proxy.oci.mediatypes import UPSTREAM_ACCEPT
    from tests.registry import cli

    proxy = platproxy(seeded.registry.url, "linux/amd64")
    for path in ("/v2/platform.all/library/multi/manifests/1", "/v2/library/multi/manifests/1"):
        assert request(proxy.port, "GET", path, headers={"Accept": UPSTREAM_ACCEPT})[0] == 200
    rows = json.loads(cli("cache", "--cache-dir", str(proxy.cache_dir), "ls", "--json").stdout)["tags"]
    mine = {(r["resolved_for"], r["platform"]) for r in rows if r["image"].endswith("library/multi:1")}
    assert mine == {("index", "(the index, unresolved)"), ("linux/amd64/v1", "linux/amd64/v1")}, mine
