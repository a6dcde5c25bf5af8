"""A central mirror as real clients meet it: skopeo, podman and ctr from an address a
``[[clients]]`` rule names get that rule's platform; index tools (cosign, BuildKit) get the index as
published; a person picks a platform, or the whole index, with a selector in the name.

The clients cannot choose their source address, so they connect through ``tests.relay``, which
connects onward from 127.0.0.2: platproxy sees them there, as it sees a node of another subnet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.clients import containerd, ctr, engine_root, image_digest, podman, start_engine, stop_engine, storage
from tests.conftest import skopeo_copy
from tests.e2e.test_mixed_fleet import fleet_case
from tests.indexes import Case
from tests.registry import Platproxy, Registry, config_args, push_case, request
from tests.relay import Relay

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "engine_root", "storage"]  # fixtures
Start = Callable[..., Platproxy]
RULE = '[[clients]]\ncidr = "127.0.0.2/32"\nplatform = "linux/arm64/v8"\n'
ARM64 = "linux/arm64/v8"
HOST = "linux/amd64"
GGCR_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


@pytest.fixture
def fleet(platproxy: Start, tmp_path: Path) -> Iterator[tuple[Registry, Case, Platproxy]]:
    """The 10-platform index as ``library/fleet:1`` behind a central platproxy (amd64 host) with a
    rule for 127.0.0.2."""
    registry = Registry(tmp_path / "registry").start()
    try:
        case = fleet_case()
        push_case(registry, "library/fleet:1", case)
        yield registry, case, platproxy(registry.url, "linux/amd64", config_args(tmp_path, RULE))
    finally:
        registry.stop()


def copied_digest(directory: Path) -> str:
    return "sha256:" + hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()


def test_skopeo_podman_and_ctr_get_the_platform_of_their_address(
    fleet: tuple[Registry, Case, Platproxy], storage: Path, containerd: Path, tmp_path: Path
) -> None:
    registry, case, proxy = fleet
    with Relay(proxy.port, "127.0.0.2") as relay:
        for via, expected in ((relay.address, ARM64), (proxy.address, HOST)):
            image = f"{via}/library/fleet:1"
            done = skopeo_copy(image, tmp_path / f"skopeo-{via}")
            assert done.returncode == 0, done.stderr
            assert copied_digest(tmp_path / f"skopeo-{via}") == case.digest_of(expected)
            pulled = podman(storage, "pull", "--tls-verify=false", image)
            assert pulled.returncode == 0, pulled.stderr
            shown = podman(storage, "image", "inspect", "--format", "{{.Architecture}} {{.Digest}}", image).stdout
            assert shown.split() == [expected.split("/")[1], case.digest_of(expected)]
            # ctr's --platform stands for the node's own: with another manifest it finds no match
            done = ctr(containerd, "images", "pull", "--plain-http", "--snapshotter", "native", "--platform", expected,
                       image)  # fmt: skip
            assert done.returncode == 0, done.stderr + done.stdout
            assert image_digest(containerd, image) == case.digest_of(expected)
        assert relay.connections > 0
        assert proxy.wait_for_log(f'"target": "{ARM64} (rule)"')
        registry.stop()  # the rule's answer was kept, and is served to its address without the upstream
        done = skopeo_copy(f"{relay.address}/library/fleet:1", tmp_path / "offline")
        assert done.returncode == 0, done.stderr
        assert copied_digest(tmp_path / "offline") == case.digest_of(ARM64)
    podman(storage, "system", "reset", "--force")


def test_index_tools_get_the_index_and_selectors_choose(
    fleet: tuple[Registry, Case, Platproxy], storage: Path, engine_root: Path, tmp_path: Path
) -> None:
    registry, case, proxy = fleet
    shapes = {
        "cosign/v2.2.3 (linux; amd64) go-containerregistry/v0.19.0": [("Accept", GGCR_ACCEPT)],
        "buildkit/v0.12.5": [("Accept", f"{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX}, */*")],
    }
    for source in ("127.0.0.1", "127.0.0.2"):  # an index tool gets the index, whatever the rule says
        for agent, accept in shapes.items():
            status, headers, body = request(proxy.port, "GET", "/v2/library/fleet/manifests/1",
                                            headers=[("User-Agent", agent), *accept], source=source)  # fmt: skip
            assert status == 200, body
            assert headers["docker-content-digest"] == case.top.digest, (source, agent)
            assert hashlib.sha256(body).hexdigest() == case.top.digest.split(":")[1]
            assert headers["x-platproxy-target"] == "index (tool)"
    # the same tool asking for a single manifest only (no index in Accept) gets the resolved one
    _, headers, _ = request(proxy.port, "GET", "/v2/library/fleet/manifests/1",
                            headers={"User-Agent": "buildkit/v0.12.5", "Accept": OCI_MANIFEST})  # fmt: skip
    assert headers["docker-content-digest"] == case.digest_of(HOST)

    # a person on this amd64 host asks for arm64 by name: podman and a real Docker Engine
    selected = f"{proxy.address}/platform.linux.arm64.v8/library/fleet:1"
    pulled = podman(storage, "pull", "--tls-verify=false", selected)
    assert pulled.returncode == 0, pulled.stderr
    shown = podman(storage, "image", "inspect", "--format", "{{.Architecture}} {{.Digest}}", selected).stdout
    assert shown.split() == ["arm64", case.digest_of(ARM64)]
    podman(storage, "system", "reset", "--force")
    engine = start_engine(engine_root)
    try:
        by_docker = engine.docker("pull", selected)
        assert by_docker.returncode == 0, by_docker.stderr
        inspected = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}} {{.Architecture}}", selected)
        digests, architecture = inspected.stdout.split()
        assert architecture == "arm64" and any(d.endswith(case.digest_of(ARM64)) for d in json.loads(digests))
    finally:
        stop_engine(engine)
    # skopeo copy --all names the whole index
    done = skopeo_copy(f"{proxy.address}/platform.all/library/fleet:1", tmp_path / "all", "--all")
    assert done.returncode == 0, done.stderr
    assert copied_digest(tmp_path / "all") == case.top.digest
    assert len(list((tmp_path / "all").glob("*.manifest.json"))) == len(case.images)

    registry.stop()  # each selector's answer is kept for the outage like any other
    for name, digest in (("platform.linux.arm64.v8/library/fleet", case.digest_of(ARM64)),
                         ("platform.all/library/fleet", case.top.digest)):  # fmt: skip
        status, headers, _ = request(proxy.port, "GET", f"/v2/{name}/manifests/1",
                                     headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})  # fmt: skip
        assert (status, headers["docker-content-digest"]) == (200, digest), name
    status, _, body = request(proxy.port, "GET", "/v2/platform.linux.amd65/library/fleet/manifests/1")
    assert status == 400 and b"NAME_INVALID" in body and b"amd65" in body
