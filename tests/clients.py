"""The real clients the end-to-end tests drive: podman (vfs storage), a private containerd with
``ctr``, a private Docker Engine (dockerd 20.10), each on short temporary paths (unix socket and
podman runroot lengths are limited), each stopped and removed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCKER = "/usr/bin/docker"  # Debian's client: another ``docker`` may come first on PATH


@pytest.fixture
def storage() -> Iterator[Path]:
    """podman's storage: a short path, since podman refuses a runroot over 50 characters."""
    path = Path(tempfile.mkdtemp(prefix="pp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def podman(storage: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("podman")
    assert tool, "podman must be installed (scripts/test.sh installs it)"
    base = [tool, "--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none"]  # fmt: skip
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, check=False)  # fmt: skip


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    """A private containerd 1.6 daemon (no CRI, native snapshotter); yields its socket."""
    root = tmp_path / "ctrd"
    root.mkdir()
    sock = root / "containerd.sock"
    disabled = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]  # fmt: skip
    (root / "config.toml").write_text(
        f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\ndisabled_plugins = {json.dumps(disabled)}\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n[debug]\n  address = "{root}/debug.sock"\n'
        '[metrics]\n  address = ""\n'
    )
    with running_containerd(root / "config.toml", sock, root / "containerd.log"):
        yield sock


@contextmanager
def running_containerd(config: Path, sock: Path, log: Path) -> Iterator[None]:
    """containerd run with ``config`` until the block ends (it is up once ``sock`` exists)."""
    tool = shutil.which("containerd")
    assert tool, "containerd must be installed (scripts/test.sh installs it)"
    proc = subprocess.Popen([tool, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ctr(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("ctr")
    assert tool
    return subprocess.run([tool, "--address", str(sock), "-n", "test", *args], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def image_digest(sock: Path, name: str) -> str:
    for line in ctr(sock, "images", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == name:
            return next(f for f in fields if f.startswith("sha256:"))
    raise AssertionError(f"{name} not in ctr images ls")


@dataclass
class Engine:
    root: Path
    proc: subprocess.Popen[bytes]

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": str(self.root / "client")}
        return subprocess.run([DOCKER, "-H", f"unix://{self.root}/d.sock", *args], capture_output=True, text=True,
                              timeout=300, check=False, env=env)  # fmt: skip


def start_engine(
    root: Path, mirror: str = "", env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
) -> Engine:
    dockerd = shutil.which("dockerd")
    assert dockerd, "dockerd must be installed (scripts/test.sh installs Debian's docker.io)"
    args = [dockerd, "--data-root", f"{root}/data", "--exec-root", f"{root}/exec", "-H", f"unix://{root}/d.sock",
            "--pidfile", f"{root}/d.pid", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false",
            "--bridge=none", *(["--registry-mirror", mirror] if mirror else []), *extra]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(root / "dockerd.log").open("ab"),
                            env={**os.environ, **(env or {})})  # fmt: skip
    engine = Engine(root, proc)
    deadline = time.monotonic() + 60
    while engine.docker("version").returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, (root / "dockerd.log").read_text()[-3000:]
        time.sleep(0.3)
    return engine


def stop_engine(engine: Engine) -> None:
    engine.proc.send_signal(signal.SIGTERM)
    try:
        engine.proc.wait(30)
    except subprocess.TimeoutExpired:
        engine.proc.kill()
        engine.proc.wait()


@pytest.fixture
def engine_root() -> Iterator[Path]:
    """A short directory for a Docker engine's data, exec root and socket."""
    root = Path(tempfile.mkdtemp(prefix="dk-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)
