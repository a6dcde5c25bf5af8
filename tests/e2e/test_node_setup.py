"""``platproxy node setup | undo`` as a node runs it: the drop-ins of containerd, Docker, podman
and k3s written under ``--root``, every other setting kept, nothing changed the second time,
undo byte-identical; the hosts.toml it wrote used by a real containerd 1.6 (``ctr --hosts-dir``)
through a central mirror that then resolves for the node's declared platform; bad input is one
line and exit 2 with nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clients import containerd, ctr, image_digest
from tests.conftest import Seeded
from tests.e2e.test_startup import read_only
from tests.registry import Platproxy, cli, config_args, free_port, request

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "read_only"]  # fixtures
Start = Callable[..., Platproxy]
ALL = ("--runtime", "containerd", "--runtime", "docker", "--runtime", "podman", "--runtime", "k3s")


def tree(root: Path) -> dict[str, str | None]:
    """Every file (its text) and directory (``None``) under ``root``."""
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def registration(mirror: Platproxy) -> dict[str, object] | None:
    """What the mirror holds for this (loopback) address, as a node asks for it."""
    status, _, body = request(mirror.port, "GET", "/_platproxy/nodes")
    found: dict[str, object] = json.loads(body)
    return found if status == 200 else None


def test_setup_twice_then_undo_leaves_the_tree_as_it_was(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    mirror = platproxy(seeded.registry.url, "linux/amd64")
    url = f"http://{mirror.address}"
    root = tmp_path / "node"
    (root / "etc" / "docker").mkdir(parents=True)
    (root / "etc" / "docker" / "daemon.json").write_text('{"log-driver": "journald", "data-root": "/srv/docker"}\n')
    (root / "etc" / "containers").mkdir()
    (root / "etc" / "containers" / "registries.conf").write_text('unqualified-search-registries = ["docker.io"]\n')
    before = tree(root)
    args = ("node", "setup", "--mirror", url, "--root", str(root), "--platform", "linux/arm/v7")
    first = cli(*args, *ALL)
    assert first.returncode == 0, first.stderr
    assert "registered 127.0.0.1 as linux/arm/v7 for docker, podman, k3s" in first.stdout, first.stdout
    assert (registration(mirror) or {}).get("platform") == "linux/arm/v7"
    written = tree(root)
    daemon = json.loads(written["etc/docker/daemon.json"] or "")
    assert daemon == {
        "log-driver": "journald",
        "data-root": "/srv/docker",
        "registry-mirrors": [url],
    }
    hosts = written["etc/containerd/certs.d/docker.io/hosts.toml"] or ""
    assert 'X-Platproxy-Platform = ["linux/arm/v7"]' in hosts and "server =" not in hosts
    assert f'location = "{mirror.address}"' in (written["etc/containers/registries.conf.d/50-platproxy.conf"] or "")
    assert f'- "{url}"' in (written["etc/rancher/k3s/registries.yaml"] or "")
    assert written["etc/containers/registries.conf"] == before["etc/containers/registries.conf"]  # never rewritten
    second = cli(*args, *ALL)
    assert second.returncode == 0 and second.stdout.startswith("nothing to change"), second.stdout
    assert tree(root) == written
    shown = cli(*args, *ALL, "--dry-run")
    assert shown.returncode == 0 and "unchanged" in shown.stdout and tree(root) == written
    undone = cli("node", "undo", "--root", str(root))
    assert undone.returncode == 0, undone.stderr
    assert tree(root) == before  # byte-identical, directories included
    assert "removed this node's registration" in undone.stdout and registration(mirror) is None


def test_the_hosts_toml_setup_wrote_takes_a_real_containerd_through_the_mirror_as_the_node(
    seeded: Seeded, platproxy: Start, containerd: Path, tmp_path: Path
) -> None:
    upstream = f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
    remote = '[resolve]\nhost_addresses = ["127.0.0.9/32"]\n'  # the loopback client is a remote node
    mirror = platproxy("", "linux/amd64", config_args(tmp_path, upstream + remote))
    root = tmp_path / "node"
    # the containerd config this node runs with names two hosts directories (2.2's default style)
    config = tmp_path / "containerd.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
                      '  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"\n')  # fmt: skip
    done = cli("node", "setup", "--mirror", f"http://{mirror.address}", "--root", str(root), "--runtime",
               "containerd", "--platform", "linux/arm64/v8", "--containerd-config", str(config))  # fmt: skip
    assert done.returncode == 0, done.stderr
    certs = root / "etc" / "containerd" / "certs.d"
    assert (certs / "docker.io" / "hosts.toml").is_file() and "config_path is not set" not in done.stdout
    pulled = ctr(containerd, "images", "pull", "--hosts-dir", str(certs), "--snapshotter", "native",
                 "--platform", "linux/arm64", "docker.io/library/multi:1")  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    expected = seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
    assert image_digest(containerd, "docker.io/library/multi:1") == expected
    assert mirror.wait_for_log('"target": "linux/arm64/v8 (node)"')


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, read_only: Path) -> None:
    root = tmp_path / "node"
    (root / "etc" / "docker").mkdir(parents=True)
    (root / "etc" / "docker" / "daemon.json").write_text('{"log-driver": "journald",\n  oops}\n')
    before = tree(root)
    offline = ("--mirror", "http://10.0.0.5:5000", "--offline")  # what is tested here is the files
    cases = [
        (("--mirror", "not a url", "--root", str(root), *ALL), "give the mirror's URL"),
        (("--mirror", f"http://127.0.0.1:{free_port()}", "--root", str(root), *ALL), "is unreachable"),
        ((*offline, "--root", str(root), *ALL), "daemon.json is not JSON (line 2)"),
        ((*offline, "--root", str(read_only), "--runtime", "podman"), "cannot write"),
        ((*offline, "--root", str(root), "--platform", "linux/amd65", "--runtime", "k3s"), "amd65"),
        ((*offline, "--root", str(root), "--runtime", "podman", "--ca", str(root / "missing.pem")), "no such file"),
        (("--mirror", "http://127.0.0.1:9", "--runtime", "k3s"), "k3s: not installed here"),  # this machine's root
    ]  # fmt: skip
    for args, needle in cases:
        done = (
            cli("node", "setup", "--platform", "linux/arm64", *args)
            if "--platform" not in args
            else cli("node", "setup", *args)
        )
        assert done.returncode == 2 and needle in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert tree(root) == before and list(read_only.iterdir()) == []
    no_tools = cli("node", "check", "--mirror", "http://127.0.0.1:9", "--runtime", "podman",
                   env={"PATH": str(tmp_path / "empty")})  # fmt: skip
    assert no_tools.returncode == 2 and "podman: podman is not installed here" in no_tools.stderr, no_tools.stderr
