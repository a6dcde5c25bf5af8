"""A central mirror never hands a remote node its own host's platform (the trap: containerd checks
the platform of an index's children, never of a single manifest it is handed by tag).  Real
containerd 1.6 with ``ctr images pull --hosts-dir``, real Distribution; ``host_addresses`` makes
the loopback client a remote node, as a test on one machine must."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.clients import containerd, ctr, image_digest
from tests.conftest import Seeded
from tests.registry import Platproxy, cli, config_args, request

pytestmark = pytest.mark.e2e
__all__ = ["containerd"]  # fixture
Start = Callable[..., Platproxy]
IMAGE = "docker.io/library/multi:1"


def pull(sock: Path, hosts: Path, proxy: Platproxy, header: str = "") -> str:
    """``ctr images pull --platform linux/arm64`` through ``proxy``; the digest containerd recorded."""
    directory = hosts / "docker.io"
    directory.mkdir(parents=True, exist_ok=True)
    text = f'[host."http://{proxy.address}"]\n  capabilities = ["pull", "resolve"]\n'
    if header:
        text += f'  [host."http://{proxy.address}".header]\n    X-Platproxy-Platform = ["{header}"]\n'
    (directory / "hosts.toml").write_text(text)
    ctr(sock, "images", "rm", IMAGE)
    done = ctr(sock, "images", "pull", "--hosts-dir", str(hosts), "--snapshotter", "native",
               "--platform", "linux/arm64", IMAGE)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return image_digest(sock, IMAGE)


def test_a_remote_node_gets_the_index_or_what_it_declares_and_a_sidecar_its_hosts(
    seeded: Seeded, platproxy: Start, containerd: Path, tmp_path: Path
) -> None:
    case = seeded.cases["library/multi:1"]
    upstream = f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
    central = platproxy(
        "", "linux/amd64", config_args(tmp_path, upstream + '[resolve]\nhost_addresses = ["127.0.0.9/32"]\n')
    )
    # no header: the mirror cannot tell, so containerd gets the index and picks arm64 itself
    assert pull(containerd, tmp_path / "a", central) == case.top.digest
    assert central.wait_for_log('"target": "index (unknown client)"')
    # the node declares its platform: the mirror resolves for it
    assert pull(containerd, tmp_path / "b", central, "linux/arm64/v8") == case.digest_of("linux/arm64/v8")
    assert central.wait_for_log('"target": "linux/arm64/v8 (node)"')
    # a sidecar reached over loopback keeps resolving for its host (whatever ctr asked for)
    sidecar = platproxy("", "linux/amd64", config_args(tmp_path, upstream))
    assert pull(containerd, tmp_path / "c", sidecar) == case.digest_of("linux/amd64")


ACCEPT = [("Accept", t) for t in (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)]


def test_a_central_mirror_serves_a_declared_node_and_a_registered_one_each_its_own_child(
    seeded: Seeded, platproxy: Start, containerd: Path, tmp_path: Path
) -> None:
    case = seeded.cases["library/multi:1"]
    upstream = f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
    config = config_args(tmp_path, upstream + '[resolve]\nhost_addresses = ["127.0.0.9/32"]\n')
    central = platproxy("", "linux/amd64", config)

    def skopeo_digest() -> str:
        """What a real client from 127.0.0.1 (which names no platform) is handed by tag."""
        ref = f"docker://{central.address}/library/multi:1"
        done = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref], capture_output=True,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return "sha256:" + hashlib.sha256(done.stdout).hexdigest()

    def tag_from(source: str) -> str:
        status, headers, _ = request(
            central.port, "GET", "/v2/library/multi/manifests/1", headers=ACCEPT, source=source
        )
        assert status == 200
        return headers["docker-content-digest"]

    # node A (127.0.0.1) registers as arm64 the way node setup does for podman and Docker
    done = cli("node", "setup", "--mirror", f"http://{central.address}", "--runtime", "podman", "--root",
               str(tmp_path / "a"), "--platform", "linux/arm64/v8")  # fmt: skip
    assert done.returncode == 0 and "registered 127.0.0.1 as linux/arm64/v8" in done.stdout, done.stdout + done.stderr
    assert skopeo_digest() == case.digest_of("linux/arm64/v8")
    assert central.wait_for_log('"target": "linux/arm64/v8 (registration)"')
    # the same address declaring arm/v7 in its header (containerd's hosts.toml) is resolved for that
    assert pull(containerd, tmp_path / "h", central, "linux/arm/v7") == case.digest_of("linux/arm/v7")
    # node B (127.0.0.2) registers as amd64: its own address only
    body = json.dumps({"platform": "linux/amd64", "runtime": "docker"}).encode()
    assert request(central.port, "POST", "/_platproxy/nodes", body, source="127.0.0.2")[0] == 200
    assert tag_from("127.0.0.2") == case.digest_of("linux/amd64")
    assert skopeo_digest() == case.digest_of("linux/arm64/v8")  # A's platform is untouched
    # B cannot register (or overwrite) A: an address in the body is refused, as is a platform that does not exist
    claim = json.dumps({"platform": "linux/amd64", "address": "127.0.0.1"}).encode()
    status, _, answer = request(central.port, "POST", "/_platproxy/nodes", claim, source="127.0.0.2")
    assert status == 400 and b"only its own address" in answer
    typo = json.dumps({"platform": "linux/amd65"}).encode()
    status, _, answer = request(central.port, "POST", "/_platproxy/nodes", typo, source="127.0.0.2")
    assert status == 400 and b"amd65" in answer and central.wait_for_log('"event": "registration refused"')
    assert skopeo_digest() == case.digest_of("linux/arm64/v8")
    assert tag_from("127.0.0.2") == case.digest_of("linux/amd64")
    listed = cli("cache", "nodes", "--json", "--cache-dir", str(central.cache_dir))
    assert listed.returncode == 0, listed.stderr
    nodes = {n["address"]: (n["platform"], n["runtime"]) for n in json.loads(listed.stdout)["nodes"]}
    assert nodes == {"127.0.0.1": ("linux/arm64/v8", "podman"), "127.0.0.2": ("linux/amd64/v1", "docker")}
