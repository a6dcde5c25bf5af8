"""Each engine snippet in deploy/clients/ (shown in docs/clients.md) exercised by the real client.

podman 4.3 (vfs storage) and containerd 1.6 + ctr (a private daemon, native snapshotter) pull a
multi-platform image through platproxy, directly and through their mirror configuration.
Docker's engine cannot run here: the requests it sends to a ``registry-mirrors`` entry are
replayed instead (paths under /v2/library/..., no ns).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST
from tests.clients import containerd, ctr, image_digest, podman, storage
from tests.conftest import Seeded
from tests.registry import Platproxy, request

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "storage"]  # fixtures
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


def test_ctr_pulls_from_localhost(seeded: Seeded, hub_proxy: Platproxy, containerd: Path) -> None:
    image = f"{hub_proxy.address}/library/multi:1"
    done = ctr(
        containerd, "images", "pull", "--plain-http", "--snapshotter", "native", "--platform", "linux/amd64", image
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert image_digest(containerd, image) == chosen(seeded)


def test_ctr_default_hosts_toml_mirrors_every_registry(seeded: Seeded, platproxy: Start, containerd: Path,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """deploy/clients/hosts.toml as certs.d/_default: each registry (here docker.io and ghcr.io,
    both played by the test registry) goes through platproxy under its own name (ns)."""
    config = tmp_path / "two.toml"
    config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
                      f'[[upstream]]\nname = "ghcr.io"\nurl = "{seeded.registry.url}"\n')  # fmt: skip
    proxy = platproxy("", PLATFORM, ["--config", str(config)])
    certs = tmp_path / "certs.d" / "_default"
    certs.mkdir(parents=True)
    (certs / "hosts.toml").write_text(snippet("hosts.toml", proxy.address))
    for image in ("docker.io/library/multi:1", "ghcr.io/library/multi:1"):
        done = ctr(containerd, "images", "pull", "--hosts-dir", str(tmp_path / "certs.d"), "--snapshotter", "native",
                   "--platform", "linux/amd64", image)  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        assert image_digest(containerd, image) == chosen(seeded)
    assert proxy.wait_for_log('"upstream": "docker.io"') and proxy.wait_for_log('"upstream": "ghcr.io"')
    assert "server =" not in (CLIENTS / "hosts.toml").read_text()  # nothing pins every registry to Docker Hub


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


def test_podman_platform_flag_gets_the_mirrors_answer_and_the_ways_round(
    seeded: Seeded, hub_proxy: Platproxy, storage: Path
) -> None:
    """The FAQ (docs/faq.md), as podman does it: the mirror resolves a tag for its host, so
    ``--platform linux/arm64`` on this amd64 host still gets amd64; the selector and the index
    digest get arm64."""
    image = f"{hub_proxy.address}/library/multi:1"
    done = podman(storage, "pull", "--tls-verify=false", "--platform", "linux/arm64", image)
    inspect = ("image", "inspect", "--format", "{{.Architecture}} {{.Digest}}")
    assert done.returncode == 0, done.stderr  # podman takes it without a word
    got = podman(storage, *inspect, image).stdout.split()
    case = seeded.cases["library/multi:1"]
    assert got == ["amd64", chosen(seeded)]
    selected = f"{hub_proxy.address}/platform.linux.arm64/library/multi:1"
    done = podman(storage, "pull", "--tls-verify=false", "--platform", "linux/arm64", selected)
    assert done.returncode == 0, done.stderr
    assert podman(storage, *inspect, selected).stdout.split() == ["arm64", case.digest_of("linux/arm64/v8")]
    by_digest = f"{hub_proxy.address}/library/multi@{case.top.digest}"
    done = podman(storage, "pull", "--tls-verify=false", "--platform", "linux/arm/v7", by_digest)
    assert done.returncode == 0, done.stderr
    assert podman(storage, "image", "inspect", "--format", "{{.Architecture}}", by_digest).stdout.strip() == "arm"
    podman(storage, "system", "reset", "--force")
