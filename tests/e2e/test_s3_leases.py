"""Replicas on one bucket sharing a fill through a lease: killed, stalled and slow holders, and
the holder's multipart upload during the download (Ceph RGW, the real S3 server).

These use the test double upstream, because they need a blob that arrives slowly enough to
kill, pause or outlast a replica in the middle of it (a fault a real registry does not produce
on demand).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.fakeupstream import FakeUpstream
from tests.ocibuild import sha256
from tests.registry import Platproxy, free_port, request
from tests.rgw import Rgw, blob_key, bucket, landed, s3_args

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def test_replica_killed_mid_fill_another_takes_over_after_the_lease(platproxy: Start, rgw: Rgw, tmp_path: Path) -> None:
    data = os.urandom(3 * 2**20)
    digest = sha256(data)
    fake = FakeUpstream(blobs={digest: data}, chunk_delay=0.05).start()  # 48 chunks: about 2.4 s per fetch
    try:
        name = bucket(rgw)
        key = blob_key(digest)
        seen_sizes: set[int] = set()
        watching = threading.Event()

        def watch() -> None:  # everything the bucket ever shows under the digest's key
            while not watching.is_set():
                size = rgw.keys(name, "platproxy/blobs/").get(key)
                if size is not None:
                    seen_sizes.add(size)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        args = s3_args(tmp_path, rgw, name, 'lease_ttl = "2s"')
        first, second = (platproxy(fake.url, "linux/amd64", args) for _ in range(2))
        path = f"/v2/library/slow/blobs/{digest}"
        pool = ThreadPoolExecutor(2)
        cut = pool.submit(request, first.port, "GET", path)
        while not fake.count("GET", digest):
            time.sleep(0.02)
        time.sleep(0.3)  # the first replica holds the lease and is part-way through
        waiting = pool.submit(request, second.port, "GET", path)
        time.sleep(0.5)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        with pytest.raises(Exception):  # noqa: B017 - the cut shows as any connection error
            cut.result(timeout=30)
        started = time.monotonic()
        status, _, body = waiting.result(timeout=60)
        assert status == 200 and sha256(body) == digest
        assert time.monotonic() - started < 10
        pool.shutdown()
        landed(rgw, name, {key})
        time.sleep(0.2)  # the watcher sees it too
    finally:
        watching.set()
        fake.stop()
    watcher.join()
    assert seen_sizes == {len(data)}  # never anything partial under the digest's key, and then the blob
    assert fake.count("GET", digest) == 2  # the dead replica's fetch, then the one that took over
    assert rgw.keys(name)[key] == len(data)
    metrics = request(second.port, "GET", "/metrics")[2].decode()
    assert 'platproxy_lease_total{outcome="taken_over"} 1.0' in metrics
    assert "took over an expired lease" in second.log()


@pytest.mark.parametrize("peers", [False, True], ids=["polling", "streaming-from-the-holder"])
def test_a_stalled_holder_never_releases_its_successors_lease(
    platproxy: Start, rgw: Rgw, tmp_path: Path, peers: bool
) -> None:
    """The holder is paused past its TTL (SIGSTOP), another replica takes over, then the first
    resumes and its fetch fails: releasing its lease must not remove the successor's, or the
    third replica would start a third fetch.  With peer listeners, the waiting replicas are
    streaming from the paused holder: they give up on it after a lease's length, not later."""
    data = os.urandom(3 * 2**20)
    digest = sha256(data)
    fake = FakeUpstream(blobs={digest: data}, chunk_delay=0.08, cut_first=1).start()  # about 4 s a fetch
    try:
        name = bucket(rgw)
        extra = 'lease_ttl = "2s"\n'  # renewals every 0.7 s, even on a busy machine

        def peer() -> str:
            return f'peer_listen = "127.0.0.1:{free_port()}"\npeer_secret = "0123456789abcdef"\n' if peers else ""

        first, second, third = (platproxy(fake.url, "linux/amd64", s3_args(tmp_path, rgw, name, extra + peer()))
                                for _ in range(3))  # fmt: skip
        assert all("lease_release" in r.log() for r in (first, second, third))  # what the store supports, said
        path = f"/v2/library/slow/blobs/{digest}"
        pool = ThreadPoolExecutor(3)
        cut = pool.submit(request, first.port, "GET", path)
        while not fake.count("GET", digest):
            time.sleep(0.02)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGSTOP)
        waiting = [pool.submit(request, r.port, "GET", path) for r in (second, third)]
        deadline = time.monotonic() + 20
        while fake.count("GET", digest) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.count("GET", digest) == 2  # the lease expired: one of the others took over
        first.proc.send_signal(signal.SIGCONT)
        with pytest.raises(Exception):  # noqa: B017 - its fetch was cut half-way: so is its client
            cut.result(timeout=60)
        for answer in waiting:
            status, _, body = answer.result(timeout=60)
            assert status == 200 and sha256(body) == digest
        pool.shutdown()
        landed(rgw, name, {blob_key(digest)})
    finally:
        fake.stop()
    assert fake.count("GET", digest) == 2  # not 3: the stalled holder left its successor's lease alone
    if peers:  # the waiting replicas gave up on the silent holder after a lease's length
        waited = second.log() + third.log()
        assert "the lease holder cannot be reached" in waited or "streaming from the lease holder stopped" in waited
    assert "lease not released: another replica holds it now" in first.log()
    deadline = time.monotonic() + 5
    while rgw.keys(name, "platproxy/leases/") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rgw.keys(name, "platproxy/leases/") == {}  # the blob is stored: no lease or marker is left


def test_a_fill_longer_than_the_lease_keeps_it_by_renewing(platproxy: Start, rgw: Rgw, tmp_path: Path) -> None:
    data = os.urandom(2 * 2**20)
    digest = sha256(data)
    fake = FakeUpstream(blobs={digest: data}, chunk_delay=0.08).start()  # 32 chunks: about 2.6 s
    try:
        args = s3_args(tmp_path, rgw, bucket(rgw), 'lease_ttl = "1s"')
        replicas = [platproxy(fake.url, "linux/amd64", args) for _ in range(2)]
        path = f"/v2/library/slow/blobs/{digest}"
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(request, replicas[0].port, "GET", path)
            while not fake.count("GET", digest):
                time.sleep(0.02)
            second = pool.submit(request, replicas[1].port, "GET", path)
            results = [first.result(timeout=60), second.result(timeout=60)]
    finally:
        fake.stop()
    assert [(status, sha256(body)) for status, _, body in results] == [(200, digest)] * 2
    assert fake.count("GET", digest) == 1  # renewed every lease_ttl/3: never taken over
    metrics = request(replicas[1].port, "GET", "/metrics")[2].decode()
    assert 'platproxy_lease_total{outcome="held"}' in metrics
    assert 'outcome="taken_over"' not in metrics


def test_the_lease_holder_uploads_parts_during_the_download(platproxy: Start, rgw: Rgw, tmp_path: Path) -> None:
    data = os.urandom(12 * 2**20)
    digest = sha256(data)
    key = blob_key(digest)
    fake = FakeUpstream(blobs={digest: data}, chunk_delay=0.01).start()  # 192 chunks: about 2 s
    try:
        name = bucket(rgw)
        proxy = platproxy(fake.url, "linux/amd64", s3_args(tmp_path, rgw, name, 'part_size = "5MiB"'))
        with ThreadPoolExecutor(1) as pool:
            pulled = pool.submit(request, proxy.port, "GET", f"/v2/library/slow/blobs/{digest}")
            parts_before_the_end = 0
            while not pulled.done():
                uploads = rgw.call("list_multipart_uploads", Bucket=name).get("Uploads", [])
                for u in uploads:
                    try:
                        listed = rgw.call("list_parts", Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
                    except ClientError:  # completed between the two listings
                        continue
                    if not pulled.done():
                        parts_before_the_end = max(parts_before_the_end, len(listed.get("Parts", [])))
                        assert rgw.keys(name).get(key) in (None, len(data))  # parts never show as the object
                time.sleep(0.1)
            status, _, body = pulled.result()
    finally:
        fake.stop()
    assert status == 200 and sha256(body) == digest
    assert parts_before_the_end >= 1  # sent while the blob was still arriving
    assert landed(rgw, name, {key})[key] == len(data)
    assert not rgw.call("list_multipart_uploads", Bucket=name).get("Uploads")
