"""``platproxy node check``: proof with each real runtime that its pulls go through the mirror.

Each runtime is set up by ``node setup`` under ``--root`` and pointed at what setup wrote: a
containerd 1.6 started with its own config (CRI on, ``config_path`` set: setup and check both
read it from ``containerd config dump``), a Docker Engine 20.10 started with the ``daemon.json``
setup merged, podman reading the ``registries.conf.d`` drop-in (bind-mounted over its system
directory in a private mount namespace).  The mirror counts the loopback client as a remote
node (``host_addresses``), so a proven line names how the node was placed: its header
(containerd) or its registration (Docker, podman).  Then the proof fails the way it should:
the drop-in removed (containerd went direct), the mirror stopped (Docker names it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.node.changes import RECORD
from tests.clients import DOCKER, engine_root, running_containerd, start_engine, stop_engine
from tests.conftest import Seeded
from tests.registry import Platproxy, cli, config_args, request

pytestmark = pytest.mark.e2e
__all__ = ["engine_root"]  # a fixture
Start = Callable[..., Platproxy]
REMOTE = '[resolve]\nhost_addresses = ["127.0.0.9/32"]\n'  # the loopback client is a remote node


def mirror_for(seeded: Seeded, platproxy: Start, tmp_path: Path) -> Platproxy:
    upstream = f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
    return platproxy("", "linux/amd64", config_args(tmp_path, upstream + REMOTE))


@pytest.fixture
def cri_containerd() -> Iterator[tuple[Path, Path]]:
    """A containerd 1.6 with its CRI plugin on and ``config_path`` set, as a Kubernetes node runs
    it: (its socket, its config file).  The hosts directory is under the node root the test
    gives setup (``/etc/containerd/certs.d`` there)."""
    root = Path(tempfile.mkdtemp(prefix="cd-"))
    sock = root / "c.sock"
    config = root / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n'
        'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", '
        '"io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n[debug]\n  address = "{root}/d.sock"\n'
        '[metrics]\n  address = ""\n[plugins."io.containerd.grpc.v1.cri"]\n  stream_server_address = "127.0.0.1"\n'
        '  stream_server_port = "0"\n  [plugins."io.containerd.grpc.v1.cri".containerd]\n    snapshotter = "native"\n'
        '  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "/etc/containerd/certs.d"\n'
    )
    try:
        with running_containerd(config, sock, root / "containerd.log"):
            yield sock, config
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_containerd_is_proven_through_the_mirror_as_the_node_then_seen_going_direct(
    seeded: Seeded, platproxy: Start, cri_containerd: tuple[Path, Path], tmp_path: Path
) -> None:
    sock, config = cri_containerd
    mirror = mirror_for(seeded, platproxy, tmp_path)
    root = tmp_path / "node"
    where = ("--root", str(root), "--containerd-config", str(config))
    done = cli("node", "setup", "--mirror", f"http://{mirror.address}", "--runtime", "containerd",
               "--platform", "linux/arm/v7", *where)  # fmt: skip
    assert done.returncode == 0 and "config_path is not set" not in done.stdout, done.stdout + done.stderr
    hosts = root / "etc/containerd/certs.d/docker.io/hosts.toml"
    assert hosts.is_file()
    env = {"CONTAINERD_SNAPSHOTTER": "native"}
    checked = cli("node", "check", "--containerd-address", str(sock), *where, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "proven: containerd (docker.io): through the mirror as linux/arm/v7 (node)"
    assert mirror.wait_for_log('"target": "linux/arm/v7 (node)"')
    assert mirror.wait_for_log('"upstream": "canary"')
    hosts.unlink()  # the drop-in gone: containerd goes to Docker Hub itself
    unproven = cli("node", "check", "--containerd-address", str(sock), *where, env=env)
    assert unproven.returncode == 1, unproven.stdout + unproven.stderr
    line = unproven.stdout.strip()
    assert line.startswith(
        "NOT proven: containerd (docker.io): never contacted the mirror; it went to "
        f"docker.io directly (no hosts.toml for docker.io in {root}/etc/containerd/certs.d)"
    ), line


def test_docker_registers_is_proven_then_names_a_stopped_mirror(
    seeded: Seeded, platproxy: Start, engine_root: Path, tmp_path: Path
) -> None:
    mirror = mirror_for(seeded, platproxy, tmp_path)
    root = tmp_path / "node"
    (root / "etc/docker").mkdir(parents=True)
    daemon = root / "etc/docker/daemon.json"
    daemon.write_text('{"max-concurrent-downloads": 2}\n')
    done = cli("node", "setup", "--mirror", f"http://{mirror.address}", "--runtime", "docker", "--root", str(root))
    assert done.returncode == 0 and "registered 127.0.0.1 as linux/" in done.stdout, done.stdout + done.stderr
    assert json.loads(daemon.read_text()) == {"max-concurrent-downloads": 2,
                                              "registry-mirrors": [f"http://{mirror.address}"]}  # fmt: skip
    platform = json.loads(request(mirror.port, "GET", "/_platproxy/nodes")[2])["platform"]
    engine = start_engine(engine_root, extra=("--config-file", str(daemon)))
    try:
        host = ("--root", str(root), "--docker-host", f"unix://{engine_root}/d.sock")
        env = {"DOCKER_CONFIG": str(engine_root / "client")}
        checked = cli("node", "check", *host, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == f"proven: docker (docker.io): through the mirror as {platform} (registration)"
        images = subprocess.run([DOCKER, "-H", f"unix://{engine_root}/d.sock", "images", "-q"], capture_output=True,
                                text=True, check=False, env={**os.environ, **env})  # fmt: skip
        assert images.stdout.strip() == ""  # the canary is not left behind
        mirror.stop()
        stopped = cli("node", "check", *host, env=env)
        assert stopped.returncode == 1
        assert stopped.stdout.strip() == (
            f"NOT proven: docker (docker.io): not proven: the mirror at http://"
            f"{mirror.address} is unreachable: [Errno 111] Connection refused"
        )
    finally:
        stop_engine(engine)


def test_podman_reading_the_drop_in_is_proven(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    mirror = mirror_for(seeded, platproxy, tmp_path)
    root = tmp_path / "node"
    done = cli("node", "setup", "--mirror", f"http://{mirror.address}", "--runtime", "podman", "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    platform = json.loads(request(mirror.port, "GET", "/_platproxy/nodes")[2])["platform"]
    store = Path(tempfile.mkdtemp(prefix="pc-"))
    try:
        (store / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{store}/run"\n'
                                            f'graphroot = "{store}/root"\n')  # fmt: skip
        (store / "containers.conf").write_text('[engine]\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n')
        env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(store / "storage.conf"),
               "CONTAINERS_CONF": str(store / "containers.conf")}  # fmt: skip
        drop_ins = root / "etc/containers/registries.conf.d"
        # podman reads /etc/containers/registries.conf.d: the node's, seen there in a private mount namespace
        command = (f"mount --bind {drop_ins} /etc/containers/registries.conf.d && exec {sys.executable} -m proxy.cli "
                   f"node check --root {root}")  # fmt: skip
        checked = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
                                 capture_output=True, text=True, timeout=300, env=env, check=False)  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == f"proven: podman (docker.io): through the mirror as {platform} (registration)"
    finally:
        shutil.rmtree(store, ignore_errors=True)


def test_the_node_endpoints_follow_the_mirrors_auth_and_a_check_is_read_once_by_its_opener(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("node:" + bcrypt.hashpw(b"s3cret-node", bcrypt.gensalt(rounds=4)).decode() + "\n")
    upstream = f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
    mirror = platproxy("", "linux/amd64", config_args(tmp_path, upstream + f'[auth]\nhtpasswd = "{htpasswd}"\n'))
    body = json.dumps({"platform": "linux/arm/v7"}).encode()
    assert request(mirror.port, "POST", "/_platproxy/nodes", body)[0] == 401
    assert request(mirror.port, "POST", "/_platproxy/checks")[0] == 401
    root = tmp_path / "node"
    args = ("node", "setup", "--mirror", f"http://{mirror.address}", "--runtime", "podman", "--root", str(root),
            "--platform", "linux/arm/v7")  # fmt: skip
    refused = cli(*args)
    assert refused.returncode == 2 and "answered 401" in refused.stderr and not root.exists(), refused.stderr
    done = cli(*args, env={"PLATPROXY_MIRROR_CREDENTIALS": "node:s3cret-node"})
    assert done.returncode == 0 and "registered 127.0.0.1 as linux/arm/v7" in done.stdout, done.stdout + done.stderr
    assert "s3cret-node" not in done.stdout + done.stderr + mirror.log() + (root / RECORD).read_text()
    # without auth: a check is read by the address that opened it (or this host), once
    open_mirror = platproxy("", "linux/amd64", config_args(tmp_path, upstream + REMOTE))
    status, _, opened = request(open_mirror.port, "POST", "/_platproxy/checks", source="127.0.0.2")
    nonce = json.loads(opened)["nonce"]
    assert status == 201 and len(nonce) == 32
    accept = [("Accept", "application/vnd.docker.distribution.manifest.list.v2+json")]
    seen = request(open_mirror.port, "GET", f"/v2/platproxy-check/{nonce}/manifests/latest", headers=accept)
    assert seen[0] == 200 and seen[1]["x-platproxy-target"]
    gone = request(open_mirror.port, "GET", f"/v2/platproxy-check/{'0' * 32}/manifests/latest")
    assert gone[0] == 404 and json.loads(gone[2])["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert request(open_mirror.port, "GET", f"/_platproxy/checks/{nonce}", source="127.0.0.3")[0] == 403
    status, _, answer = request(open_mirror.port, "GET", f"/_platproxy/checks/{nonce}", source="127.0.0.2")
    assert status == 200 and [s["kind"] for s in json.loads(answer)["sightings"]] == ["manifest"]
    assert request(open_mirror.port, "GET", f"/_platproxy/checks/{nonce}", source="127.0.0.2")[0] == 404
    assert not any(open_mirror.cache_dir.rglob("blobs/*"))  # nothing of the canary was cached
