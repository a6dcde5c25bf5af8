"""The bench's parts, shared by its sections (``run``, ``cold``, ``private``, ``s3``, ``profile``):
the servers it starts (Distribution's proxy, platproxy, nginx), its load generators (wrk, curl,
skopeo) and the images it seeds.  A module of its own so that no section imports another.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.oci.mediatypes import (  # noqa: E402
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    UPSTREAM_ACCEPT,
)
from tests.indexes import Case  # noqa: E402
from tests.ocibuild import gzip_layer, image, index  # noqa: E402
from tests.registry import REGISTRY_BIN, free_port, peak_rss_mib, request  # noqa: E402
from tests.tlsfiles import Pair  # noqa: E402

SMALL, LARGE = "library/small:1", "library/large:1"


def now() -> float:
    return time.monotonic()


def wait_ok(port: int, timeout: float = 30.0, tls: bool = False) -> float:
    """Seconds until GET /v2/ answers 200 (polled every 5 ms); ``tls``: any TLS handshake that
    completes counts (the bench's own CA signs the server's certificate)."""
    start = now()
    while now() - start < timeout:
        try:
            if tls:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    ssl._create_unverified_context().wrap_socket(raw).close()
                return now() - start
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
    tls: Pair | None = None
    """A certificate and key to serve TLS with (``bench/tls.py``); ``None``: plain HTTP."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def launch(self, command: list[str], env: dict[str, str] | None = None) -> None:
        started = now()
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_ok(self.port, tls=self.tls is not None)
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
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"  tls:\n    certificate: {self.tls.cert}\n    key: {self.tls.key}\n" if self.tls else "")
            + "log:\n  level: error\n  accesslog:\n    disabled: true\n"
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
    cache_dir: Path | None = None
    """An existing cache directory to serve (``bench/scale.py``); ``None``: a new one under ``root``."""
    cache: Path = field(init=False)

    def start(self) -> PlatproxyServer:
        if self.tls is not None:
            self.config += f'[tls]\ncert = "{self.tls.cert}"\nkey = "{self.tls.key}"\n'
        self.cache = self.cache_dir or self.root / f"cache-{time.monotonic_ns()}"
        extra = []
        if self.config:
            path = self.root / f"config-{time.monotonic_ns()}.toml"
            path.parent.mkdir(parents=True, exist_ok=True)
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
    listen 127.0.0.1:{self.port}{" ssl" if self.tls else ""};
    {f"ssl_certificate {self.tls.cert}; ssl_certificate_key {self.tls.key};" if self.tls else ""}
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
        agent: str = "", headers: tuple[str, ...] | list[str] = (), script: Path | None = None
        ) -> tuple[float, float]:  # fmt: skip
    """(requests/s, p99 latency in ms), non-2xx answers excluded by failing loudly; ``script``: a
    wrk Lua script (the paths it asks for)."""
    extra = ["-H", f"User-Agent: {agent}"] if agent else []
    extra += ["-s", str(script)] if script else []
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
