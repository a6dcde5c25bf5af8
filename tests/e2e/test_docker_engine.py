"""A real Docker Engine (Debian's docker.io, 20.10) pulling through platproxy as its
``registry-mirrors`` entry: an OCI index, a Docker manifest list and a nested index each end as
this host's manifest, and again from platproxy's cache once the upstream is stopped."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import indexes
from tests.indexes import Case
from tests.registry import Platproxy, Registry, push_case

pytestmark = pytest.mark.e2e
DOCKER = "/usr/bin/docker"  # Debian's client: another ``docker`` may come first on PATH
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
IMAGES = {  # image -> the name of this host's entry in its case
    "multi:1": f"linux/{ARCH}" if ARCH == "amd64" else "linux/arm64/v8",
    "winlin:1": f"linux/{ARCH}",
    "nested:1": ARCH,
}


@dataclass
class Engine:
    root: Path
    proc: subprocess.Popen[bytes]

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": str(self.root / "client")}
        return subprocess.run([DOCKER, "-H", f"unix://{self.root}/d.sock", *args], capture_output=True, text=True,
                              timeout=300, check=False, env=env)  # fmt: skip


def start_engine(root: Path, mirror: str) -> Engine:
    dockerd = shutil.which("dockerd")
    assert dockerd, "dockerd must be installed (scripts/test.sh installs Debian's docker.io)"
    args = [dockerd, "--data-root", f"{root}/data", "--exec-root", f"{root}/exec", "-H", f"unix://{root}/d.sock",
            "--pidfile", f"{root}/d.pid", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false",
            "--bridge=none", "--registry-mirror", mirror]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(root / "dockerd.log").open("ab"))
    engine = Engine(root, proc)
    deadline = time.monotonic() + 60
    while engine.docker("version").returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, (root / "dockerd.log").read_text()[-3000:]
        time.sleep(0.3)
    return engine


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Registry, dict[str, Case], Platproxy, Engine]]:
    """A registry standing in for Docker Hub, platproxy in front of it (resolving for this host),
    and a Docker engine whose only mirror is platproxy."""
    registry = Registry(tmp_path / "registry").start()
    cases = {"library/multi:1": indexes.alpine_with_attestations(), "library/winlin:1": indexes.windows_ltsc(),
             "library/nested:1": indexes.goauthentik_nested()}  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="dk-"))  # unix socket paths are short
    proxy: Platproxy | None = None
    engine: Engine | None = None
    try:
        for ref, case in cases.items():
            push_case(registry, ref, case)
        config = tmp_path / "hub.toml"
        config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{registry.url}"\n')
        proxy = Platproxy(tmp_path / "cache", "", extra=["--config", str(config)], log_dir=tmp_path).start()
        engine = start_engine(root, f"http://{proxy.address}")
        yield registry, cases, proxy, engine
    finally:
        if engine is not None:
            engine.proc.send_signal(signal.SIGTERM)
            try:
                engine.proc.wait(30)
            except subprocess.TimeoutExpired:
                engine.proc.kill()
                engine.proc.wait()
        if proxy is not None:
            proxy.stop()
            assert "Traceback" not in proxy.log(), proxy.log()[-3000:]
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_docker_pulls_this_hosts_manifest_through_the_mirror(
    hub: tuple[Registry, dict[str, Case], Platproxy, Engine],
) -> None:
    registry, cases, proxy, engine = hub

    def pull_all() -> None:
        for name, entry in IMAGES.items():
            pulled = engine.docker("pull", name)
            assert pulled.returncode == 0, pulled.stderr + (engine.root / "dockerd.log").read_text()[-2000:]
            shown = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}} {{.Architecture}}", name)
            repo_digests, architecture = shown.stdout.split()
            expected = cases[f"library/{name}"].digest_of(entry)
            assert f"{name.split(':')[0]}@{expected}" in json.loads(repo_digests), (name, shown)
            assert architecture == ARCH

    pull_all()
    assert proxy.wait_for_log('"cache": "miss"')
    removed = engine.docker("rmi", *IMAGES)
    assert removed.returncode == 0, removed.stderr
    registry.stop()
    pull_all()  # the same answers from platproxy's cache, with the upstream gone
