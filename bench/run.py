"""platproxy against Distribution's own proxy mode (and nginx), on one machine, in one run.

    bash bench/run.sh [--reps 3] [--seconds 5] [--blob-mib 256]

Starts a real upstream (Debian's docker-registry) seeded with real images, Distribution in proxy
mode in front of it, platproxy in front of it, and nginx serving platproxy's blob files (the
practical limit for bytes off disk); measures each on the same work and reports medians of the
repetitions and the ratios platproxy/Distribution and platproxy/nginx, as markdown and JSON in
bench/results/.  The load generator is wrk (C, multi-threaded) for request rates, curl
processes for bytes, skopeo for pulls.  Correctness is checked (digests of what clients got);
timing never fails anything.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import startup  # noqa: E402
from bench.servers import (  # noqa: E402
    DOCKER_17_ACCEPT,
    DOCKER_17_AGENT,
    DOCKER_ARM64_AGENT,
    FLEET_RULES,
    LARGE,
    SMALL,
    DistributionProxy,
    Nginx,
    PlatproxyServer,
    curl_many,
    large_case,
    median,
    skopeo_pull,
    verify_many,
    wrk,
)
from proxy.oci.mediatypes import (  # noqa: E402
    UPSTREAM_ACCEPT,
)
from tests import indexes  # noqa: E402
from tests.registry import Registry, push_case, request  # noqa: E402


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="platproxy-bench-"))
    upstream = Registry(work / "upstream").start()
    results: dict[str, dict[str, list[float]]] = {}

    def record(measure: str, who: str, value: float) -> None:
        results.setdefault(measure, {}).setdefault(who, []).append(value)

    for measure_name, values in startup.measure(runs=5 * args.reps).items():  # before any load runs
        for value in values:
            record(measure_name, "platproxy", value)
    small = indexes.alpine_with_attestations()
    push_case(upstream, SMALL, small)
    large, big_digest = large_case(args.blob_mib)
    big_size = next(b.size for b in large.blobs if b.digest == big_digest)
    push_case(upstream, LARGE, large)
    dist_root, pp_root = work / "dist", work / "pp"
    dist_root.mkdir()
    pp_root.mkdir()
    servers: list[Any] = []
    try:
        # cached request rates and latency -------------------------------------------------------
        dist = DistributionProxy(dist_root, upstream.url).start()
        pp = PlatproxyServer(pp_root, upstream.url).start()
        fleet = PlatproxyServer(pp_root, upstream.url, FLEET_RULES).start()  # a central mirror for a mixed fleet
        servers += [dist, pp, fleet]
        record("startup to first 200 on /v2/ (s)", "distribution", dist.startup)
        record("startup to first 200 on /v2/ (s)", "platproxy", pp.startup)
        status, answer, _ = request(fleet.port, "GET", f"/v2/{SMALL.replace(':', '/manifests/')}",
                                    headers={"Accept": UPSTREAM_ACCEPT, "User-Agent": DOCKER_ARM64_AGENT})  # fmt: skip
        assert status == 200 and answer["x-platproxy-target"] == "linux/arm64/v8 (user-agent)", answer  # its record
        for server in (dist, pp):
            skopeo_pull(server.address, SMALL, work / "warm")
            skopeo_pull(server.address, LARGE, work / "warm")
        digest = request(
            pp.port, "GET", f"/v2/{SMALL.replace(':', '/manifests/')}", headers={"Accept": UPSTREAM_ACCEPT}
        )[1]["docker-content-digest"]
        nginx = Nginx(work / "nginx", pp.cache / "blobs").start()
        servers.append(nginx)
        record("startup to first 200 on /v2/ (s)", "nginx", nginx.startup)
        for _ in range(args.reps):
            for who, server in (("distribution", dist), ("platproxy", pp)):
                rps, p99 = wrk(f"http://{server.address}/v2/library/small/manifests/1", args.seconds)
                record("manifest by tag, cached, c=64 (req/s)", who, rps)
                record("manifest by tag, cached, c=64 (p99 ms)", who, p99)
            # a Docker 17.09 engine (no OCI in Accept) gets the OCI manifest converted to schema 2,
            # made once and kept: its rate is compared with the unconverted one just measured
            # (Distribution has no conversion: it answers such a client 404).
            converted, _ = wrk(f"http://{pp.address}/v2/library/small/manifests/1", args.seconds,
                               accept=DOCKER_17_ACCEPT, agent=DOCKER_17_AGENT)  # fmt: skip
            record("manifest by tag, cached, converted for Docker 17.09, c=64 (req/s)", "platproxy", converted)
            record("converted / unconverted tag rate (x)", "platproxy", converted / results[
                "manifest by tag, cached, c=64 (req/s)"]["platproxy"][-1])  # fmt: skip
            # a central mirror with 3 client rules, for an arm64 Docker engine (rules walked, its
            # User-Agent parsed): compared with the plain rate just measured
            by_agent, _ = wrk(f"http://{fleet.address}/v2/library/small/manifests/1", args.seconds,
                              agent=DOCKER_ARM64_AGENT)  # fmt: skip
            record("manifest by tag, cached, 3 client rules + User-Agent, c=64 (req/s)", "platproxy", by_agent)
            record("3 rules + User-Agent / plain tag rate (x)", "platproxy", by_agent / results[
                "manifest by tag, cached, c=64 (req/s)"]["platproxy"][-1])  # fmt: skip
            for who, server in (("distribution", dist), ("platproxy", pp), ("nginx", nginx)):
                rps, p99 = wrk(f"http://{server.address}/v2/library/small/manifests/{digest}", args.seconds)
                record("manifest by digest, cached, c=64 (req/s)", who, rps)
                record("manifest by digest, cached, c=64 (p99 ms)", who, p99)
            for who, server in (("distribution", dist), ("platproxy", pp), ("nginx", nginx)):
                url = f"http://{server.address}/v2/library/large/blobs/{big_digest}"
                verify_many(url, 1, big_digest)
                for streams in (1, 8):
                    took = curl_many(url, streams, big_size)
                    measure = f"cached {args.blob_mib} MiB blob, {streams} stream(s) (MB/s)"
                    record(measure, who, big_size * streams / took / 1e6)
            took = curl_many(f"http://{nginx.address}/v2/library/large/blobs/{big_digest}", 32, big_size)
            record(f"32 clients, same cached {args.blob_mib} MiB blob (s)", "nginx", took)
        for server in (dist, pp, nginx):
            server.stop()
        # TLS: platproxy's [tls] listener (the default loop) against nginx and Distribution over TLS
        from bench import tls

        tls.section(upstream, work, record, args.reps, args.seconds, args.blob_mib, big_digest, big_size)
        # private images: a cached private tag (authorization remembered) against a public one
        if args.private:
            from bench import private

            private.section(work, record, args.reps, args.seconds, small)
        # cold pulls -------------------------------------------------------------------------------
        for _ in range(args.reps):
            for name, label in (
                (SMALL, "small multi-platform image"),
                (LARGE, f"large image ({args.blob_mib} MiB layer)"),
            ):
                record(f"cold pull, {label} (s)", "direct", skopeo_pull(upstream.address, name, work / "p"))
                for who, make in (("distribution", lambda: DistributionProxy(dist_root, upstream.url)),
                                  ("platproxy", lambda: PlatproxyServer(pp_root, upstream.url))):  # fmt: skip
                    server = make().start()
                    servers.append(server)
                    record(f"cold pull, {label} (s)", who, skopeo_pull(server.address, name, work / "p"))
                    server.stop()
        # cold blobs: 1 and 32 clients of one, 100 different ones ----------------------------------
        from bench import cold

        cold.section(upstream, work, record, args.reps, big_digest, big_size, args.blob_mib, servers)
        for who, attr in (("distribution", DistributionProxy), ("platproxy", PlatproxyServer), ("nginx", Nginx)):
            rss = [s.rss for s in servers if isinstance(s, attr)]
            record("peak RSS (MiB)", who, max(rss))
        if args.scale:  # costs as the cache grows: caches made by a helper, not by pulling
            from bench import scale

            scale.section(upstream, work, record, args.seconds, [int(n) for n in args.scale.split(",")],
                          args.bucket_objects)  # fmt: skip
        if args.s3_blob_mib:  # replicas on one bucket of a real S3 server (Ceph RGW)
            from bench import s3

            s3_case, s3_digest = large_case(args.s3_blob_mib)
            push_case(upstream, "library/large:s3", s3_case)
            s3_size = next(b.size for b in s3_case.blobs if b.digest == s3_digest)
            s3.section(upstream, work, record, args.reps, s3_digest, s3_size, args.s3_blob_mib)
    finally:
        for server in servers:
            with contextlib.suppress(Exception):  # best effort at teardown
                server.stop()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "reps": args.reps,
        "seconds": args.seconds,
        "blob_mib": args.blob_mib,
        "s3_blob_mib": args.s3_blob_mib,
        "medians": {m: {who: median(v) for who, v in by.items()} for m, by in results.items()},
        "raw": results,
    }


COLUMNS = (("platproxy", "platproxy"), ("distribution", "Distribution proxy"), ("nginx", "nginx"), ("direct", "direct"))
RATIOS = (
    ("distribution", "platproxy / Distribution"),
    ("nginx", "platproxy / nginx"),
    ("direct", "platproxy / direct"),
)


def _ratio(by: dict[str, float], other: str) -> str:
    if other not in by or "platproxy" not in by or not by[other]:
        return ""
    return f"{by['platproxy'] / by[other]:.2f}x"


def table(report: dict[str, Any]) -> str:
    head = [name for _, name in COLUMNS] + [name for _, name in RATIOS]
    lines = [
        f"platproxy bench, {report['date']}, {report['cores']} cores, medians of {report['reps']} runs "
        f"(wrk {report['seconds']} s, c=64)",
        "",
        "| measure | " + " | ".join(head) + " |",
        "| --- " * (len(head) + 1) + "|",
    ]
    for measure, by in report["medians"].items():
        cells = [f"{by[key]:.3g}" if key in by else "" for key, _ in COLUMNS]
        cells += [_ratio(by, key) for key, _ in RATIOS]
        lines.append(f"| {measure} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--s3-blob-mib", type=int, default=64,
                        help="blob size of the S3 lines (RGW memstore holds them in RAM); 0: skip")  # fmt: skip
    parser.add_argument("--no-private", dest="private", action="store_false",
                        help="skip the private-image lines (auth = passthrough)")  # fmt: skip
    parser.add_argument("--scale", default="1000,10000,100000",
                        help="cache sizes (images) of the scale lines; empty: skip")  # fmt: skip
    parser.add_argument("--bucket-objects", type=int, default=100_000,
                        help="objects in the bucket of the scale lines' cache ls and gc; 0: skip")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    (args.out / "latest.md").write_text(table(report))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
