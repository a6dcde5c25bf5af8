"""The real upstream for end-to-end tests: Debian's ``docker-registry`` (CNCF Distribution 2.8).

Started on a free loopback port with its own storage folder, and fed through the plain
registry API (``POST .../blobs/uploads/``, ``PUT <location>?digest=``, ``PUT .../manifests/<ref>``),
exactly as a real ``docker push`` would.  Also starts platproxy itself as a real process.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from proxy.oci.mediatypes import IMAGE_TYPES, INDEX_TYPES
from tests.ocibuild import Blob, Image

if TYPE_CHECKING:
    from tests.indexes import Case

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


RESERVED: set[int] = set()
"""Ports a long-running daemon may bind at any time (Ceph's messengers rebind within their
range when an OSD is marked down and up): never handed out to a server a test starts."""


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED:
            return port


def wait_http(
    port: int, path: str = "/v2/", timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering on port {port}")
        try:
            conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=tls) if tls
                    else http.client.HTTPConnection("127.0.0.1", port, timeout=2))  # fmt: skip
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}{path} within {timeout}s")


_CONFIGS = itertools.count()


def config_args(directory: Path, text: str) -> list[str]:
    """A TOML config written to ``directory``, as ``platproxy serve`` arguments."""
    path = directory / f"config-{next(_CONFIGS)}.toml"
    path.write_text(text)
    return ["--config", str(path)]


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the peak resident set of a process so far (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


BODY_METHODS = ("POST", "PUT", "PATCH")


def cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``platproxy ARGS`` as a user runs it, output captured, the exit status left to the test."""
    return subprocess.run([sys.executable, "-m", "proxy.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)  # fmt: skip


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: Mapping[str, str] | Iterable[tuple[str, str]] = (), source: str = "",
            ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request to 127.0.0.1:``port``.  ``headers`` as pairs may repeat a name (Docker sends one
    ``Accept`` per type); ``source`` is the address to connect from (any 127.0.0.0/8 address)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0) if source else None)
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    if not any(k.lower() == "content-length" for k, _ in pairs) and (body is not None or method in BODY_METHODS):
        pairs.append(("Content-Length", str(len(body or b""))))  # as http.client's request() does
    conn.putrequest(method, path)
    for name, value in pairs:
        conn.putheader(name, value)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


@dataclass
class Registry:
    """A running Distribution registry."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    schema1: bool = False
    """Accept pushes of signed schema 1 manifests (``compatibility.schema1.enabled``)."""
    tls: tuple[Path, Path] | None = None
    """Serve https with this certificate (chain) and key."""
    htpasswd: Path | None = None
    """Require basic auth from this htpasswd file (bcrypt), as a private registry does."""
    auth: str = ""
    """An ``auth:`` section of its own (``TokenServer.registry_auth()``: token auth, as Docker Hub)."""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        config = self.root / "config.yml"
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n" if self.tls else "")
            + "log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n"
            + ("compatibility:\n  schema1:\n    enabled: true\n" if self.schema1 else "")
            + (f"auth:\n  htpasswd:\n    realm: test\n    path: {self.htpasswd}\n" if self.htpasswd else "")
            + self.auth
        )
        self.log_path = self.root / "registry.log"
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab")
        )
        unverified = ssl._create_unverified_context() if self.tls else None  # only to see it is up
        wait_http(self.port, proc=self.proc, tls=unverified)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def requests_for(self, path_part: str, method: str = "GET") -> int:
        """How many requests the registry has served whose URI contains ``path_part``."""
        count = 0
        assert self.log_path is not None
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") != "response completed":
                continue
            if path_part in entry.get("http.request.uri", "") and entry.get("http.request.method") == method:
                count += 1
        return count

    # -- pushing --------------------------------------------------------------------------------

    def push_blob(self, name: str, blob: Blob) -> None:
        status, _, _ = request(self.port, "HEAD", f"/v2/{name}/blobs/{blob.digest}")
        if status == 200:
            return
        status, headers, body = request(self.port, "POST", f"/v2/{name}/blobs/uploads/")
        assert status == 202, (status, body)
        location = urlsplit(headers["location"])
        query = f"{location.query}&" if location.query else ""
        path = f"{location.path}?{query}digest={blob.digest}"
        upload_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
        status, _, body = request(self.port, "PUT", path, blob.data, upload_headers)
        assert status == 201, (status, body)

    def push_manifest(self, name: str, reference: str, manifest: Blob) -> None:
        status, _, body = request(self.port, "PUT", f"/v2/{name}/manifests/{reference}", manifest.data,
                                  {"Content-Type": manifest.media_type})  # fmt: skip
        assert status == 201, (status, body)

    def push_image(self, name: str, image: Image, tag: str | None = None) -> None:
        for blob in image.blobs():
            self.push_blob(name, blob)
        self.push_manifest(name, tag or image.manifest.digest, image.manifest)

    def push_index(self, name: str, tag: str, top: Blob, images: list[Image], nested: list[Blob] | None = None) -> None:
        for img in images:
            self.push_image(name, img)
        for blob in nested or []:
            self.push_manifest(name, blob.digest, blob)
        self.push_manifest(name, tag, top)


@dataclass
class Platproxy:
    """platproxy itself, started as a real process with ``platproxy serve`` flags."""

    cache_dir: Path
    upstream: str
    platform: str = ""
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    log_dir: Path | None = None
    """Where the log goes (default: beside the cache directory)."""
    tls: ssl.SSLContext | None = None
    """The client side of a TLS listener (``[tls]`` in the config ``extra`` names)."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables added to the server's environment (``HTTPS_PROXY``, ``PLATPROXY_*``...)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Platproxy:
        args = [sys.executable, "-m", "proxy.cli", "serve", "--listen", self.address,
                "--cache-dir", str(self.cache_dir), *self.extra]  # fmt: skip
        if self.upstream:
            args += ["--upstream", self.upstream]
        if self.platform:
            args += ["--platform", self.platform]
        self.log_path = (self.log_dir or self.cache_dir.parent) / f"platproxy-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab"), env=env)
        wait_http(self.port, proc=self.proc, tls=self.tls)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> int:
        """How often ``needle`` is in the log once it appears: a request is logged after its last byte."""
        deadline = time.monotonic() + timeout
        while needle not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.log().count(needle)


def push_case(registry: Registry, ref: str, case: Case) -> None:
    """Blobs first, then image manifests, then nested indexes (by digest), then the tag."""
    name, tag = ref.split(":")
    for blob in case.blobs:
        if blob.media_type not in IMAGE_TYPES | INDEX_TYPES:
            registry.push_blob(name, blob)
    for kinds in (IMAGE_TYPES, INDEX_TYPES):
        for blob in case.blobs:
            if blob.media_type in kinds:
                registry.push_manifest(name, blob.digest, blob)
    registry.push_manifest(name, tag, case.top)
