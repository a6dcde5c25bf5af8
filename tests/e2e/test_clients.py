"""Each engine snippet in deploy/clients/ (shown in the README) exercised by the real client.

podman 4.3 (vfs storage) and containerd 1.6 + ctr (a private daemon, native snapshotter) pull a
multi-platform image through platproxy, directly and through their mirror configuration.
Docker's engine cannot run here: the requests it sends to a ``registry-mirrors`` entry are
replayed instead (paths under /v2/library/..., no ns).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST
from tests.conftest import Seeded
from tests.registry import Platproxy, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
CLIENTS = Path(__file__).parents[2] / "deploy" / "clients"
PLATFORM = "linux/amd64/v2"  # what platproxy resolves for in these tests; amd64 is what the clients run


def snippet(name: str, address: str) -> str:
    """A snippet from deploy/clients/ with platproxy's documented address replaced by the test's."""
    return (CLIENTS / name).read_text().replace("127.0.0.1:5000", address)


@pytest.fixture
def hub_proxy(seeded: Seeded, platproxy: Start, tmp_path: Path) -> Platproxy:
    """platproxy whose upstream is named docker.io (as on a real node) but is the test registry."""
    config = tmp_path / "hub.toml"
    config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n')
    return platproxy("", PLATFORM, ["--config", str(config)])


def chosen(seeded: Seeded) -> str:
    return seeded.cases["library/multi:1"].digest_of("linux/amd64")


# -- podman ------------------------------------------------------------------------------------


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


def test_podman_pulls_from_localhost(seeded: Seeded, hub_proxy: Platproxy, storage: Path) -> None:
    image = f"{hub_proxy.address}/library/multi:1"
    done = podman(storage, "pull", "--tls-verify=false", image)
    assert done.returncode == 0, done.stderr
    out = podman(storage, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}} {{.Digest}}", image).stdout
    assert out.split() == ["linux/amd64", chosen(seeded)]
    podman(storage, "system", "reset", "--force")


def test_podman_registries_conf_mirror(seeded: Seeded, hub_proxy: Platproxy, storage: Path, tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(snippet("registries.conf", hub_proxy.address))
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    done = podman(storage, "pull", "docker.io/library/multi:1", env=env)
    assert done.returncode == 0, done.stderr
    out = podman(storage, "image", "inspect", "--format", "{{.Digest}}", "docker.io/library/multi:1", env=env)
    assert out.stdout.strip() == chosen(seeded)
    assert hub_proxy.wait_for_log('"path": "/v2/library/multi/manifests/1"')
    podman(storage, "system", "reset", "--force", env=env)


# -- containerd ----------------------------------------------------------------------------------


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    """A private containerd 1.6 daemon (no CRI, native snapshotter); yields its socket."""
    tool = shutil.which("containerd")
    assert tool, "containerd must be installed (scripts/test.sh installs it)"
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
    proc = subprocess.Popen([tool, "--config", str(root / "config.toml")], stdout=subprocess.DEVNULL,
                            stderr=(root / "containerd.log").open("wb"))  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, (root / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.1)
        yield sock
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


def test_ctr_pulls_from_localhost(seeded: Seeded, hub_proxy: Platproxy, containerd: Path) -> None:
    image = f"{hub_proxy.address}/library/multi:1"
    done = ctr(
        containerd, "images", "pull", "--plain-http", "--snapshotter", "native", "--platform", "linux/amd64", image
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert image_digest(containerd, image) == chosen(seeded)


def test_ctr_hosts_toml_mirror_adds_ns(seeded: Seeded, hub_proxy: Platproxy, containerd: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs.d" / "docker.io"
    certs.mkdir(parents=True)
    (certs / "hosts.toml").write_text(snippet("hosts.toml", hub_proxy.address))
    done = ctr(containerd, "images", "pull", "--hosts-dir", str(tmp_path / "certs.d"), "--snapshotter", "native",
               "--platform", "linux/amd64", "docker.io/library/multi:1")  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert image_digest(containerd, "docker.io/library/multi:1") == chosen(seeded)
    assert hub_proxy.wait_for_log('"upstream": "docker.io"') and hub_proxy.wait_for_log('"cache": "miss"')


# -- Docker's engine (requests replayed) --------------------------------------------------------------


def test_docker_registry_mirror_requests(seeded: Seeded, hub_proxy: Platproxy) -> None:
    mirror = json.loads(snippet("daemon.json", hub_proxy.address))["registry-mirrors"][0]
    port = int(mirror.rsplit(":", 1)[1])
    assert request(port, "GET", "/v2/")[0] == 200
    modern = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, DOCKER_SCHEMA1_SIGNED])
    status, headers, body = request(port, "GET", "/v2/library/multi/manifests/1", headers={"Accept": modern})
    assert status == 200 and headers["docker-content-digest"] == chosen(seeded)
    for layer in json.loads(body)["layers"]:
        assert request(port, "GET", f"/v2/library/multi/blobs/{layer['digest']}")[0] == 200
    # an engine that knows only schema 2 gets the chosen entry of a Docker list
    old = {"Accept": f"{DOCKER_MANIFEST}, {DOCKER_SCHEMA1_SIGNED}"}
    status, headers, _ = request(port, "GET", "/v2/library/winlin/manifests/1", headers=old)
    assert status == 200 and headers["content-type"] == DOCKER_MANIFEST
    assert headers["docker-content-digest"] == seeded.cases["library/winlin:1"].digest_of("linux/amd64")
