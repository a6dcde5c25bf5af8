"""A central mirror never hands a remote node its own host's platform (the trap: containerd checks
the platform of an index's children, never of a single manifest it is handed by tag).  Real
containerd 1.6 with ``ctr images pull --hosts-dir``, real Distribution; ``host_addresses`` makes
the loopback client a remote node, as a test on one machine must."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clients import containerd, ctr, image_digest
from tests.conftest import Seeded
from tests.registry import Platproxy, config_args

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
