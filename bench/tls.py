"""TLS where a central mirror lives: platproxy's own ``[tls]`` listener under uvloop and under the
standard asyncio loop, against nginx serving the same bytes with the same certificate, and the
manifest-by-tag rate over TLS against Distribution's proxy with the same certificate.

    .venv/bin/python bench/tls.py [--blob-mib 256] [--reps 3] [--seconds 5]

Lines (medians of ``--reps``): a cached blob, 1 stream and 8 streams in parallel (MB/s, curl
over TLS, every download checked for its size), and a cached tag at c=64 (wrk over TLS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import LARGE, SMALL, DistributionProxy, Nginx, PlatproxyServer, curl_many, large_case, wrk  # noqa: E402
from tests import indexes  # noqa: E402
from tests.registry import Registry, push_case  # noqa: E402
from tests.tlsfiles import TestCA  # noqa: E402

Record = Callable[[str, str, float], None]


def section(registry: Registry, work: Path, record: Record, reps: int, seconds: int, blob_mib: int,
            big_digest: str, big_size: int, loops: tuple[str, ...] = ("asyncio",)) -> None:  # fmt: skip
    """The TLS lines, on ``registry`` holding ``LARGE`` (a ``blob_mib`` layer) and ``SMALL``:
    platproxy under each of ``loops`` (named "platproxy" when there is one), nginx and
    Distribution's proxy, all with one certificate of a CA made here."""
    ca = TestCA(work / "tls-ca")
    pair = ca.issue("server")
    os.environ["CURL_CA_BUNDLE"] = str(ca.path)
    servers: dict[str, object] = {}
    try:
        for loop in loops:
            pp = PlatproxyServer(root=work / f"tls-{loop}", upstream=registry.url, config=f'loop = "{loop}"\n',
                                 tls=pair)  # fmt: skip
            servers["platproxy" if len(loops) == 1 else f"platproxy ({loop})"] = pp.start()
        first = next(iter(servers.values()))
        assert isinstance(first, PlatproxyServer)
        for server in servers.values():
            assert isinstance(server, PlatproxyServer)
            curl_many(f"https://{server.address}/v2/{LARGE.replace(':1', '')}/blobs/{big_digest}", 1, big_size)  # warm
        servers["nginx"] = Nginx(root=work / "tls-nginx", blobs=first.cache / "blobs", tls=pair).start()
        servers["distribution"] = DistributionProxy(root=work / "tls-dist", remote=registry.url, tls=pair).start()
        for _ in range(reps):
            for who, server in servers.items():
                address = server.address  # type: ignore[attr-defined]
                url = f"https://{address}/v2/{LARGE.replace(':1', '')}/blobs/{big_digest}"
                if who != "distribution":
                    for streams in (1, 8):
                        took = curl_many(url, streams, big_size)
                        record(f"cached {blob_mib} MiB blob over TLS, {streams} stream(s) (MB/s)", who,
                               big_size * streams / took / 1e6)  # fmt: skip
                if who != "nginx":
                    rps, _ = wrk(f"https://{address}/v2/{SMALL.replace(':', '/manifests/')}", seconds)
                    record("manifest by tag over TLS, cached, c=64 (req/s)", who, rps)
    finally:
        for server in servers.values():
            server.stop()  # type: ignore[attr-defined]
        os.environ.pop("CURL_CA_BUNDLE", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}

    def record(line: str, who: str, value: float) -> None:
        results.setdefault(line, {}).setdefault(who, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = Registry(work / "registry").start()
        try:
            big, big_digest = large_case(args.blob_mib)
            push_case(registry, LARGE, big)
            push_case(registry, SMALL, indexes.alpine_with_attestations())
            big_size = next(b.size for b in big.blobs if b.digest == big_digest)
            section(registry, work, record, args.reps, args.seconds, args.blob_mib, big_digest, big_size,
                    loops=("asyncio", "uvloop"))  # fmt: skip
        finally:
            registry.stop()
    print(f"TLS, medians of {args.reps} (platproxy under each loop; nginx and Distribution with the same certificate)")
    for line, by in results.items():
        medians = {who: statistics.median(v) for who, v in by.items()}
        cells = ", ".join(f"{who} {m:,.0f}" for who, m in medians.items())
        ref = "nginx" if "nginx" in medians else "distribution"
        ratios = ", ".join(f"{who.split('(')[1].rstrip(')')} {m / medians[ref]:.2f}x"
                           for who, m in medians.items() if who.startswith("platproxy"))  # fmt: skip
        print(f"  {line}: {cells}; / {ref}: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
