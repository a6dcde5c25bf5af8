"""Replicas that stream a cold blob from the lease holder as it arrives (``peer_listen``), not
from the bucket once the whole blob is there.

Real parts: replicas as processes on one bucket of the session's Ceph cluster, the session's
Distribution registry as the upstream, clients over HTTP hashing every byte.  The "holder
killed mid-fill" case uses the test double upstream, for a blob slow enough to kill a replica
in the middle of it (a real registry does not produce that on demand).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import statistics
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from proxy.config import S3Config
from tests.conftest import Seeded
from tests.fakeupstream import FakeUpstream
from tests.ocibuild import Blob
from tests.registry import Platproxy, config_args, free_port, request
from tests.rgw import Rgw, blob_key, bucket, landed, s3_text

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
SECRET = "tier-peer-secret-0123456789"
MiB = 2**20


def with_peers(rgw: Rgw, name: str, extra: str = "") -> str:
    return s3_text(rgw, name, f'peer_listen = "127.0.0.1:{free_port()}"\npeer_secret = "{SECRET}"\n{extra}')


def replicas_on(
    platproxy: Start, upstream: str, rgw: Rgw, name: str, tmp_path: Path, extra: str = ""
) -> list[Platproxy]:
    return [platproxy(upstream, "linux/amd64", config_args(tmp_path, with_peers(rgw, name, extra))) for _ in range(3)]


def fetch(url: str, started: float) -> tuple[str, float, float]:
    """The body's digest, and the times of its first and last byte since ``started``."""
    with urllib.request.urlopen(url, timeout=300) as resp:
        h = hashlib.sha256()
        first = 0.0
        while chunk := resp.read(MiB):
            first = first or time.monotonic() - started
            h.update(chunk)
    return "sha256:" + h.hexdigest(), first, time.monotonic() - started


def holder_of(replicas: list[Platproxy]) -> int:
    """The replica that won the blob's lease (its lease counters)."""
    won = []
    for i, r in enumerate(replicas):
        text = request(r.port, "GET", "/metrics")[2].decode()
        if re.search(r'^platproxy_lease_total\{outcome="(acquired|taken_over)"\} [1-9]', text, re.MULTILINE):
            won.append(i)
    assert len(won) == 1, won
    return won[0]


def test_waiting_replicas_stream_from_the_holder_as_fast_as_its_own_clients(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    """3 replicas, 30 clients (10 each) of one cold 256 MiB blob: one upstream fetch, every body
    hashed, and the waiting replicas' clients finish about when the holder's do."""
    blob = Blob(os.urandom(256 * MiB), "application/octet-stream")
    digest = blob.digest
    seeded.registry.push_blob("library/peers", blob)
    name = bucket(rgw)
    replicas = replicas_on(platproxy, seeded.registry.url, rgw, name, tmp_path)
    assert "peers on 127.0.0.1:" in replicas[0].log()
    urls = [f"http://{r.address}/v2/library/peers/blobs/{digest}" for r in replicas]
    before = seeded.registry.requests_for(f"/blobs/{digest}")
    started = time.monotonic()
    with ThreadPoolExecutor(30) as pool:
        got = list(pool.map(lambda i: fetch(urls[i % 3], started), range(30)))
    assert [g[0] for g in got] == [digest] * 30
    assert seeded.registry.requests_for(f"/blobs/{digest}") - before == 1
    holder = holder_of(replicas)
    mine = statistics.median(last for i, (_, _, last) in enumerate(got) if i % 3 == holder)
    others = statistics.median(last for i, (_, _, last) in enumerate(got) if i % 3 != holder)
    first_mine = statistics.median(first for i, (_, first, _) in enumerate(got) if i % 3 == holder)
    first_others = statistics.median(first for i, (_, first, _) in enumerate(got) if i % 3 != holder)
    print(f"holder's clients {mine:.2f} s (first byte {first_mine:.2f} s), waiting replicas' {others:.2f} s "
          f"(first byte {first_others:.2f} s): {others / mine:.2f}x")  # fmt: skip
    assert others <= 1.3 * mine, (others, mine)
    for r in replicas:  # the waiting replicas streamed from the holder, never from the bucket
        assert "back to the bucket" not in r.log() and "cannot stream this blob" not in r.log()
    assert replicas[holder].log().count('"streamed to a waiting replica"') == 2
    keys = landed(rgw, name, {blob_key(digest)}, timeout=30)
    assert keys[blob_key(digest)] == blob.size and not [k for k in keys if "/leases/" in k]


def test_the_peer_port_answers_only_signed_requests_and_the_client_port_never(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    name = bucket(rgw)
    text = with_peers(rgw, name)
    proxy = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, text))
    peer_port = int(re.search(r'peer_listen = "127.0.0.1:(\d+)"', text).group(1))  # type: ignore[union-attr]
    digest = "sha256:" + "0" * 64
    path = f"/_platproxy/peer/blobs/{digest}"
    status, _, body = request(peer_port, "GET", path)
    assert status == 401 and b"UNAUTHORIZED" in body
    status, _, body = request(peer_port, "GET", path, headers={"X-Platproxy-Peer": f"{int(time.time())}:{'0' * 64}"})
    assert status == 401
    status, _, body = request(peer_port, "GET", "/_platproxy/peer/blobs/not-a-digest")
    assert status == 400 and b"DIGEST_INVALID" in body
    assert request(proxy.port, "GET", path)[0] == 404  # the client port has no such route
    assert request(peer_port, "GET", "/v2/")[0] == 404  # and the peer port serves nothing else


@pytest.mark.parametrize("ttl", [2.0, 0.0], ids=["lease_ttl-2s", "lease_ttl-default"])
def test_killing_the_holder_mid_fill_still_serves_every_waiting_client(
    platproxy: Start, rgw: Rgw, tmp_path: Path, ttl: float
) -> None:
    """With the default ``lease_ttl`` the takeover comes within about 10 s of the holder's death
    (the lease expires at most one TTL after its last renewal, then one poll, 2 s at most)."""
    data = os.urandom(6 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    fake = FakeUpstream(blobs={digest: data}, chunk_delay=0.05).start()  # 96 chunks: about 5 s per fetch
    try:
        name = bucket(rgw)
        replicas = replicas_on(platproxy, fake.url, rgw, name, tmp_path, f'lease_ttl = "{ttl}s"' if ttl else "")
        path = f"/v2/library/slow/blobs/{digest}"
        pool = ThreadPoolExecutor(7)
        started = time.monotonic()
        first = pool.submit(fetch, f"http://{replicas[0].address}{path}", started)
        while not fake.count("GET", digest):
            time.sleep(0.02)
        waiting = [pool.submit(fetch, f"http://{r.address}{path}", started) for r in replicas[1:] for _ in range(3)]
        time.sleep(1.5)  # the waiting replicas are streaming from the holder
        assert replicas[0].log().count('"streamed to a waiting replica"') == 0  # (logged at the end only)
        assert replicas[0].proc is not None
        replicas[0].proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        replicas[0].proc.wait()
        try:
            cut = first.result(timeout=30)[0]
        except OSError:
            cut = "cut"
        assert cut != digest  # the holder's own client is cut (a short body, or an error)
        for answer in waiting:
            got, _, _ = answer.result(timeout=60)
            assert got == digest  # every waiting client served, every byte right
        pool.shutdown()
        landed(rgw, name, {blob_key(digest)}, timeout=30)
    finally:
        fake.stop()
    assert fake.count("GET", digest) == 2  # the dead holder's fetch, then the takeover's
    logs = replicas[1].log() + replicas[2].log()
    assert "streaming from the lease holder stopped; back to the bucket" in logs
    (takeover,) = [json.loads(line) for line in logs.splitlines() if "took over an expired lease" in line]
    took = datetime.fromisoformat(takeover["timestamp"].replace("Z", "+00:00")).timestamp() - killed_at
    assert took <= (ttl or S3Config().lease_ttl) + 2.5, took  # default: within about 10 s
    assert rgw.keys(name)[blob_key(digest)] == len(data)  # complete, never partial


def test_a_node_registered_with_one_replica_is_placed_by_every_replica(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    """Registrations ride the bucket: node B registers with replica 0, and replica 1 (after its
    next read of the bucket) resolves B's pulls for B's platform; an unregistered node still gets
    the index there."""
    case = seeded.cases["library/multi:1"]
    remote = '[resolve]\nhost_addresses = ["127.0.0.9/32"]\n'
    store = s3_text(rgw, bucket(rgw), 'nodes_every = "0.5s"')
    replicas = [platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, store + remote)) for _ in range(2)]
    accept = [("Accept", "application/vnd.oci.image.index.v1+json"),
              ("Accept", "application/vnd.oci.image.manifest.v1+json")]  # fmt: skip
    body = json.dumps({"platform": "linux/arm/v7", "runtime": "podman"}).encode()
    assert request(replicas[0].port, "POST", "/_platproxy/nodes", body, source="127.0.0.2")[0] == 200
    deadline = time.monotonic() + 10
    while request(replicas[1].port, "GET", "/_platproxy/nodes", source="127.0.0.2")[0] != 200:
        assert time.monotonic() < deadline, "replica 1 never read the registration"
        time.sleep(0.2)
    status, headers, _ = request(replicas[1].port, "GET", "/v2/library/multi/manifests/1", headers=accept,
                                 source="127.0.0.2")  # fmt: skip
    assert status == 200 and headers["docker-content-digest"] == case.digest_of("linux/arm/v7")
    assert headers["x-platproxy-target"] == "linux/arm/v7 (registration)"
    other = request(replicas[1].port, "GET", "/v2/library/multi/manifests/1", headers=accept, source="127.0.0.3")
    assert other[1]["x-platproxy-target"] == "index (unknown client)"
    # removed through replica 1: replica 0 forgets it too
    assert request(replicas[1].port, "DELETE", "/_platproxy/nodes", source="127.0.0.2")[0] == 200
    while request(replicas[0].port, "GET", "/_platproxy/nodes", source="127.0.0.2")[0] != 404:
        assert time.monotonic() < deadline + 10, "replica 0 kept a removed registration"
        time.sleep(0.2)
