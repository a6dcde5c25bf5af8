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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import DistributionProxy, Nginx, PlatproxyServer, curl_many, large_case, wrk  # noqa: E402
from tests import indexes  # noqa: E402
from tests.registry import Registry, push_case  # noqa: E402
from tests.tlsfiles import TestCA  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    os.environ["CURL_CA_BUNDLE"] = ""  # set below to the test CA
    results: dict[str, dict[str, list[float]]] = {}

    def record(line: str, who: str, value: float) -> None:
        results.setdefault(line, {}).setdefault(who, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = TestCA(work / "ca")
        pair = ca.issue("server")
        os.environ["CURL_CA_BUNDLE"] = str(ca.path)
        registry = Registry(work / "registry").start()
        big, big_digest = large_case(args.blob_mib)
        push_case(registry, "library/large:1", big)
        push_case(registry, "library/small:1", indexes.alpine_with_attestations())
        big_size = next(b.size for b in big.blobs if b.digest == big_digest)
        servers: dict[str, object] = {}
        try:
            for loop in ("uvloop", "asyncio"):
                pp = PlatproxyServer(root=work / loop, upstream=registry.url, config=f'loop = "{loop}"\n', tls=pair)
                servers[f"platproxy ({loop})"] = pp.start()
            first = next(iter(servers.values()))
            assert isinstance(first, PlatproxyServer)
            for server in servers.values():
                assert isinstance(server, PlatproxyServer)
                curl_many(f"https://{server.address}/v2/library/large/blobs/{big_digest}", 1, big_size)  # warm
            nginx = Nginx(root=work / "nginx", blobs=first.cache / "blobs", tls=pair).start()
            servers["nginx"] = nginx
            dist = DistributionProxy(root=work / "dist", remote=registry.url, tls=pair).start()
            servers["distribution"] = dist
            for _ in range(args.reps):
                for who, server in servers.items():
                    address = server.address  # type: ignore[attr-defined]
                    url = f"https://{address}/v2/library/large/blobs/{big_digest}"
                    if who != "distribution":
                        for streams in (1, 8):
                            took = curl_many(url, streams, big_size)
                            record(f"cached {args.blob_mib} MiB blob over TLS, {streams} stream(s) (MB/s)", who,
                                   big_size * streams / took / 1e6)  # fmt: skip
                    if who != "nginx":
                        rps, _ = wrk(f"https://{address}/v2/library/small/manifests/1", args.seconds)
                        record("manifest by tag over TLS, cached, c=64 (req/s)", who, rps)
        finally:
            for server in servers.values():
                server.stop()  # type: ignore[attr-defined]
            registry.stop()
    print(f"TLS, medians of {args.reps} (platproxy under each loop; nginx and Distribution with the same certificate)")
    for line, by in results.items():
        cells = ", ".join(f"{who} {statistics.median(v):,.0f}" for who, v in by.items())
        ref = by.get("nginx") or by.get("distribution")
        ratio = ""
        if ref and "platproxy (uvloop)" in by:
            ratio = f"; uvloop / {'nginx' if 'nginx' in by else 'distribution'}: " \
                    f"{statistics.median(by['platproxy (uvloop)']) / statistics.median(ref):.2f}x"  # fmt: skip
        print(f"  {line}: {cells}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
