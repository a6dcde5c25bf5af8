"""The shared-store lines of the bench: platproxy replicas on one S3 bucket against Distribution
replicas in proxy mode with its S3 driver on the same server (a real Ceph RGW, tests/rgw.py).

Measures a cached blob served from the bucket (1 and 8 streams) and, with 3 replicas of each,
30 cold clients (10 per replica) asking for the same blob: wall time and upstream fetches.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.run import REGISTRY_BIN, Server, curl_many, verify_many
from tests.registry import Registry
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
        )
        self.launch([sys.executable, "-m", "proxy.cli", "serve", "--listen", self.address, "--upstream", self.upstream,
                     "--cache-dir", str(self.root / f"cache-{self.port}"), "--config", str(config),
                     "--log-level", "warning"])  # fmt: skip
        return self


def section(upstream: Registry, work: Path, record: Record, reps: int, digest: str, size: int, mib: int) -> None:
    """Runs ``reps`` times; each repetition uses fresh buckets so every cold run is cold."""
    rgw = Rgw(work / "ceph").start()
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
                took = _thirty_cold_clients([url.format(r.address) for r in replicas], size, digest)
                record(f"3 replicas on S3, 30 cold clients, same {mib} MiB blob (s)", who, took)
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
    finally:
        for server in servers:
            server.stop()
        rgw.stop()


def _thirty_cold_clients(urls: list[str], size: int, digest: str) -> float:
    """30 curl-like clients spread over the replicas at once; every body is hashed."""
    import urllib.request

    def fetch(i: int) -> str:
        with urllib.request.urlopen(urls[i % len(urls)], timeout=300) as resp:
            h = hashlib.sha256()
            while chunk := resp.read(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    started = time.monotonic()
    with ThreadPoolExecutor(30) as pool:
        got = list(pool.map(fetch, range(30)))
    took = time.monotonic() - started
    if got != [digest] * 30:
        raise AssertionError(f"{sum(g != digest for g in got)} of 30 clients got wrong bytes")
    return took
