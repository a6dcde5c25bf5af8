"""The shared-store lines of the bench: platproxy replicas on one S3 bucket against Distribution
replicas in proxy mode with its S3 driver on the same server (a real Ceph RGW, tests/rgw.py).

Measures a cached blob served from the bucket (1 and 8 streams) and, with 3 replicas of each,
30 cold clients (10 per replica) asking for the same blob: wall time and upstream fetches, and
for platproxy how long the clients of the replicas that waited on the lease holder took to their
last byte against the holder's own clients (medians).  Last, the bucket collection's throughput:
``platproxy cache gc`` removing a bucket of small objects (objects/s, listing included).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import REGISTRY_BIN, Server, curl_many, verify_many
from tests.registry import Registry, free_port
from tests.rgw import ACCESS_KEY, REGION, SECRET_KEY, Rgw

Record = Callable[[str, str, float], None]


@dataclass
class DistributionS3(Server):
    """Distribution 2.8 in proxy mode with the s3 storage driver (redirects off: it streams)."""

    root: Path = field(default_factory=Path)
    remote: str = ""
    rgw: Rgw | None = None
    bucket: str = ""

    def start(self) -> DistributionS3:
        assert self.rgw is not None
        config = self.root / f"config-{self.port}.yml"
        config.write_text(
            "version: 0.1\nstorage:\n  s3:\n"
            f"    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    region: {REGION}\n"
            f"    regionendpoint: {self.rgw.endpoint}\n    bucket: {self.bucket}\n    secure: false\n"
            "    v4auth: true\n    rootdirectory: /distribution\n  redirect:\n    disable: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"proxy:\n  remoteurl: {self.remote}\n"
        )
        # The AWS Go SDK refuses to start when AWS_CA_BUNDLE is set (as on some images) for an
        # http endpoint; it has nothing to verify here.
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.launch([REGISTRY_BIN, "serve", str(config)], env)
        return self


@dataclass
class PlatproxyS3(Server):
    root: Path = field(default_factory=Path)
    upstream: str = ""
    rgw: Rgw | None = None
    bucket: str = ""

    def start(self) -> PlatproxyS3:
        assert self.rgw is not None
        config = self.root / f"config-{self.port}.toml"
        config.write_text(
            f'[store]\nbackend = "s3"\n[store.s3]\nendpoint = "{self.rgw.endpoint}"\nbucket = "{self.bucket}"\n'
            f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\npoll_interval = "50ms"\n'
            f'peer_listen = "127.0.0.1:{free_port()}"\npeer_secret = "bench-peer-secret-0123"\n'
        )
        self.launch([sys.executable, "-m", "proxy.cli", "serve", "--listen", self.address, "--upstream", self.upstream,
                     "--cache-dir", str(self.root / f"cache-{self.port}"), "--config", str(config),
                     "--log-level", "warning"])  # fmt: skip
        return self


def section(upstream: Registry, work: Path, record: Record, reps: int, digest: str, size: int, mib: int) -> None:
    """Runs ``reps`` times; each repetition uses fresh buckets so every cold run is cold."""
    # every repetition keeps its buckets (two copies of the blob, and their uploads' parts)
    rgw = Rgw(work / "ceph", memory=max(2 * 2**30, reps * 6 * size)).start()
    servers: list[Server] = []
    try:
        for rep in range(reps):
            kinds: list[tuple[str, Callable[[str], Server]]] = [
                ("distribution", lambda b: DistributionS3(root=work, remote=upstream.url, rgw=rgw, bucket=b)),
                ("platproxy", lambda b: PlatproxyS3(root=work, upstream=upstream.url, rgw=rgw, bucket=b)),
            ]
            for who, make in kinds:
                name = rgw.bucket(f"bench-{who}-{rep}")
                replicas = [make(name) for _ in range(3)]
                for r in replicas:
                    r.start()  # type: ignore[attr-defined]
                servers += replicas
                url = "http://{}/v2/library/large/blobs/" + digest
                before = upstream.requests_for(digest)
                took, each = _thirty_cold_clients([url.format(r.address) for r in replicas], size, digest)
                record(f"3 replicas on S3, 30 cold clients, same {mib} MiB blob (s)", who, took)
                if who == "platproxy":
                    holders = [i for i, r in enumerate(replicas) if _leases_acquired(r.port)]
                    if len(holders) == 1:
                        mine = [t for i, t in each if i == holders[0]]
                        others = [t for i, t in each if i != holders[0]]
                        record("3 replicas on S3: waiting replicas' time to last byte / the holder's (x)", who,
                               statistics.median(others) / statistics.median(mine))  # fmt: skip
                fetches = upstream.requests_for(digest) - before
                record("3 replicas on S3, 30 cold clients: upstream fetches", who, fetches)
                time.sleep(0.5)  # let a last upload land before the cached measurements
                verify_many(url.format(replicas[0].address), 1, digest)
                for streams in (1, 8):
                    t = curl_many(url.format(replicas[1].address), streams, size)
                    record(f"cached {mib} MiB blob from S3, {streams} stream(s) (MB/s)", who, size * streams / t / 1e6)
                for r in replicas:
                    r.stop()
        for who, kind in (("distribution", DistributionS3), ("platproxy", PlatproxyS3)):
            record("peak RSS with the S3 store (MiB)", who, max(s.rss for s in servers if isinstance(s, kind)))
        for rep in range(reps):
            record(f"cache gc on S3, {GC_OBJECTS} objects removed (objects/s)", "platproxy",
                   _gc_throughput(rgw, work, f"bench-gc-{rep}"))  # fmt: skip
    finally:
        for server in servers:
            server.stop()
        rgw.stop()


def _thirty_cold_clients(urls: list[str], size: int, digest: str) -> tuple[float, list[tuple[int, float]]]:
    """30 curl-like clients spread over the replicas at once; every body is hashed.  The wall
    time, and each client's (replica, time to its last byte)."""
    import urllib.request

    started = time.monotonic()

    def fetch(i: int) -> tuple[str, float]:
        with urllib.request.urlopen(urls[i % len(urls)], timeout=300) as resp:
            h = hashlib.sha256()
            while chunk := resp.read(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest(), time.monotonic() - started

    with ThreadPoolExecutor(30) as pool:
        got = list(pool.map(fetch, range(30)))
    took = time.monotonic() - started
    if [g for g, _ in got] != [digest] * 30:
        raise AssertionError(f"{sum(g != digest for g, _ in got)} of 30 clients got wrong bytes")
    return took, [(i % len(urls), t) for i, (_, t) in enumerate(got)]


def _leases_acquired(port: int) -> float:
    """How many fill leases a platproxy replica won (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.search(r'^platproxy_lease_total\{outcome="(?:acquired|taken_over)"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


GC_OBJECTS = 5000


def _gc_throughput(rgw: Rgw, work: Path, name: str) -> float:
    """Objects per second ``platproxy cache gc`` removes from a bucket of ``GC_OBJECTS`` small
    blobs (as many content objects, 1 KiB each, least recently pulled first), listing included."""
    import asyncio

    from aiobotocore.session import get_session

    rgw.bucket(name)

    async def seed() -> None:
        gate = asyncio.Semaphore(32)
        async with get_session().create_client("s3", **rgw.client_kwargs()) as s3:

            async def put(i: int) -> None:
                data = i.to_bytes(8, "big") * 128
                async with gate:
                    await s3.put_object(Bucket=name, Key=f"platproxy/blobs/sha256/{hashlib.sha256(data).hexdigest()}",
                                        Body=data)  # fmt: skip

            await asyncio.gather(*(put(i) for i in range(GC_OBJECTS)))

    asyncio.run(seed())
    config = work / f"{name}.toml"
    config.write_text(
        f'[store]\nbackend = "s3"\n[store.s3]\nendpoint = "{rgw.endpoint}"\nbucket = "{name}"\n'
        f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\nmax_size = 1\n'
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "proxy.cli", "cache", "gc", "--config", str(config), "--json"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    took = time.monotonic() - started
    if done.returncode != 0 or json.loads(done.stdout)["objects_removed"] != GC_OBJECTS:
        raise AssertionError(f"cache gc did not remove the {GC_OBJECTS} objects: {done.stdout} {done.stderr}")
    return GC_OBJECTS / took
