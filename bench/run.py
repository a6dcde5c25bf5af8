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
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import startup  # noqa: E402
from proxy.oci.mediatypes import (  # noqa: E402
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    UPSTREAM_ACCEPT,
)
from tests import indexes  # noqa: E402
from tests.indexes import Case  # noqa: E402
from tests.ocibuild import gzip_layer, image, index  # noqa: E402
from tests.registry import REGISTRY_BIN, Registry, free_port, peak_rss_mib, push_case, request  # noqa: E402

SMALL, LARGE = "library/small:1", "library/large:1"


def now() -> float:
    return time.monotonic()


def wait_ok(port: int, timeout: float = 30.0) -> float:
    """Seconds until GET /v2/ answers 200 (polled every 5 ms)."""
    start = now()
    while now() - start < timeout:
        try:
            if request(port, "GET", "/v2/")[0] in (200, 401):  # 401: a passthrough upstream's challenge
                return now() - start
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"port {port} never answered")


# -- servers ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Server:
    """A server started for the bench: its port, startup time and peak RSS."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    startup: float = 0.0
    rss: float = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def launch(self, command: list[str], env: dict[str, str] | None = None) -> None:
        started = now()
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_ok(self.port)
        self.startup = now() - started

    def peak_rss(self) -> float:
        assert self.proc is not None
        return peak_rss_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.rss = max(self.rss, self.peak_rss())
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class DistributionProxy(Server):
    """Distribution 2.8 in pull-through proxy mode (registry:2 with proxy.remoteurl)."""

    root: Path
    remote: str
    storage: Path = field(init=False)

    def start(self) -> DistributionProxy:
        self.storage = storage = self.root / f"storage-{time.monotonic_ns()}"
        storage.mkdir(parents=True)
        config = self.root / "config.yml"
        config.write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"proxy:\n  remoteurl: {self.remote}\n"
        )
        self.launch([REGISTRY_BIN, "serve", str(config)])
        return self


@dataclass
class PlatproxyServer(Server):
    """platproxy started the way users start it (``platproxy serve`` flags), resolving for this host."""

    root: Path
    upstream: str
    config: str = ""
    """TOML for ``--config`` (client rules), empty: none."""
    cache: Path = field(init=False)

    def start(self) -> PlatproxyServer:
        self.cache = self.root / f"cache-{time.monotonic_ns()}"
        extra = []
        if self.config:
            path = self.root / f"config-{time.monotonic_ns()}.toml"
            path.write_text(self.config)
            extra = ["--config", str(path)]
        upstream = ["--upstream", self.upstream] if self.upstream else []  # else the config's
        self.launch([sys.executable, "-m", "proxy.cli", "serve", "--listen", self.address, *upstream,
                     "--cache-dir", str(self.cache), "--log-level", "warning", *extra])  # fmt: skip
        return self


@dataclass
class Nginx(Server):
    """nginx serving platproxy's blob files: the practical limit for bytes off disk."""

    root: Path
    blobs: Path

    def start(self) -> Nginx:
        conf = self.root / "nginx.conf"
        self.root.mkdir(parents=True, exist_ok=True)
        conf.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}  # platproxy's files are 0600: read them as their owner
worker_processes 2; daemon off; pid {self.root}/nginx.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path {self.root}/b; proxy_temp_path {self.root}/p; fastcgi_temp_path {self.root}/f;
  uwsgi_temp_path {self.root}/u; scgi_temp_path {self.root}/s;
  server {{
    listen 127.0.0.1:{self.port};
    location = /v2/ {{ default_type application/json; return 200 '{{}}'; }}
    location ~ ^/v2/.+/blobs/sha256:(..)([0-9a-f]+)$ {{
      alias {self.blobs}/sha256/$1/$1$2; default_type application/octet-stream; }}
    location ~ ^/v2/.+/manifests/sha256:(..)([0-9a-f]+)$ {{
      alias {self.blobs}/sha256/$1/$1$2; default_type application/vnd.oci.image.manifest.v1+json; }}
  }}
}}
""")
        self.launch(["nginx", "-c", str(conf), "-e", "stderr"])
        return self

    def peak_rss(self) -> float:
        """The largest of the master and its workers."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return max([peak_rss_mib(self.proc.pid)] + [peak_rss_mib(int(c)) for c in children])


# -- load generators -------------------------------------------------------------------------------


DOCKER_ARM64_AGENT = ("docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/arm64 "
                      "UpstreamClient(Docker-Client/20.10.24+dfsg1 \\(linux\\))")  # fmt: skip
FLEET_RULES = "".join(
    f'[[clients]]\ncidr = "{cidr}"\nplatform = "{platform}"\n'
    for cidr, platform in (
        ("10.1.0.0/16", "linux/arm/v7"),
        ("10.2.0.0/16", "linux/arm64/v8"),
        ("fd00::/8", "linux/s390x"),
    )
)
"""Three rules none of the bench's clients match: each request walks them all, then its User-Agent decides."""
DOCKER_17_AGENT = "docker/17.09.1-ce go/go1.8.3 git-commit/19e2cf6 kernel/4.9.0 os/linux arch/amd64"
DOCKER_17_ACCEPT = ", ".join([DOCKER_SCHEMA1_SIGNED, "application/json", DOCKER_MANIFEST, DOCKER_LIST])


def wrk(url: str, seconds: int, connections: int = 64, accept: str = UPSTREAM_ACCEPT,
        agent: str = "", headers: tuple[str, ...] | list[str] = ()) -> tuple[float, float]:  # fmt: skip
    """(requests/s, p99 latency in ms), non-2xx answers excluded by failing loudly."""
    extra = ["-H", f"User-Agent: {agent}"] if agent else []
    extra += [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Accept: {accept}",
                          *extra, url], capture_output=True, text=True, check=True).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors for {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def curl_many(url: str, count: int, size: int) -> float:
    """Wall time of ``count`` parallel downloads to /dev/null; each must bring ``size`` bytes."""
    settle()
    start = now()
    cmd = ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", url]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    got = [int(p.communicate()[0] or 0) for p in procs]
    took = now() - start
    if got != [size] * count:
        raise RuntimeError(f"short downloads from {url}: {got}")
    return took


def verify_many(url: str, count: int, digest: str) -> None:
    """``count`` parallel downloads, each hashed by sha256sum: a correctness pass, never timed."""
    procs = [subprocess.Popen(["sh", "-c", f"curl -sf {url} | sha256sum"], stdout=subprocess.PIPE, text=True)
             for _ in range(count)]  # fmt: skip
    sums = ["sha256:" + p.communicate()[0].split()[0] for p in procs]
    if sums != [digest] * count:
        raise RuntimeError(f"{url} served wrong bytes: {sorted(set(sums))}")


def settle() -> None:
    """Write back dirty pages before a cold run, so one server's writes do not throttle the next's."""
    os.sync()
    time.sleep(0.2)


def skopeo_pull(address: str, name: str, dest: Path) -> float:
    settle()
    start = now()
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{address}/{name}",
                    f"dir:{dest}"], check=True, capture_output=True)  # fmt: skip
    took = now() - start
    shutil.rmtree(dest)
    return took


# -- the run ---------------------------------------------------------------------------------------


def large_case(mib: int) -> tuple[Case, str]:
    base = gzip_layer({"opt/large.bin": os.urandom(mib * 2**20)})
    named = {f"linux/{a}": image({"architecture": a, "os": "linux"}, [base, gzip_layer({"etc/arch": a.encode()})])
             for a in ("amd64", "arm64", "arm")}  # fmt: skip
    top = index(list(named.values()))
    return Case(top, [b for i in named.values() for b in (i.manifest, *i.blobs())], named), base.digest


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


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
