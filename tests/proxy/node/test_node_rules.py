"""Where each containerd reads hosts directories (from ``containerd config dump``), and each
runtime's drop-in (pure).  The 1.6 dump is real (``tests/e2e/test_node_setup.py`` runs
containerd's own); the 1.7, 2.0 and 2.2 layouts follow containerd's docs/cri/config.md and
docs/hosts.md of those releases (1.7: the CRI plugin's registry section as in 1.6; 2.0: the
images plugin ``io.containerd.cri.v1.images``; 2.2: two directories by default)."""

from __future__ import annotations

import json

import pytest

from proxy.node.containerd import DumpError, config_path_line, config_paths
from proxy.node.dropins import DropInError, hosts_toml, merge_daemon_json, registries_conf

V1 = 'version = 2\n[plugins]\n  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "{}"\n'
V2 = 'version = 3\n[plugins]\n  [plugins."io.containerd.cri.v1.images".registry]\n    config_path = "{}"\n'


@pytest.mark.parametrize(
    ("dump", "paths"),
    [
        (V1.format(""), []),  # 1.6's default: unset, the CRI reads no hosts directory
        (V1.format("/etc/containerd/certs.d"), ["/etc/containerd/certs.d"]),  # 1.7 as configured
        (V2.format("/etc/containerd/certs.d"), ["/etc/containerd/certs.d"]),  # 2.0
        (V2.format("/etc/containerd/certs.d:/etc/docker/certs.d"), ["/etc/containerd/certs.d", "/etc/docker/certs.d"]),
        ("version = 3\n", []),
    ],
)
def test_config_paths(dump: str, paths: list[str]) -> None:
    assert config_paths(dump) == paths


def test_a_dump_that_is_not_toml_and_the_line_to_add() -> None:
    with pytest.raises(DumpError):
        config_paths("containerd: command not found [")
    assert 'plugins."io.containerd.cri.v1.images".registry' in config_path_line(3)
    assert 'plugins."io.containerd.grpc.v1.cri".registry' in config_path_line(2)


def test_daemon_json_keeps_every_other_key_and_is_left_alone_when_done() -> None:
    merged = merge_daemon_json('{"debug": true, "registry-mirrors": ["http://old:5000"]}', "http://m:5000")
    assert json.loads(merged) == {"debug": True, "registry-mirrors": ["http://m:5000", "http://old:5000"]}
    assert merge_daemon_json(merged, "http://m:5000") == merged  # byte for byte: nothing to change
    assert json.loads(merge_daemon_json(None, "http://m:5000")) == {"registry-mirrors": ["http://m:5000"]}
    with pytest.raises(DropInError, match="line 1"):
        merge_daemon_json("{nope", "http://m:5000")
    with pytest.raises(DropInError, match="not a JSON object"):
        merge_daemon_json("[1]", "http://m:5000")


def test_hosts_toml_and_registries_conf() -> None:
    text = hosts_toml("https://m:5000", "linux/arm/v7", "/etc/ssl/m.crt")
    assert 'ca = "/etc/ssl/m.crt"' in text and 'X-Platproxy-Platform = ["linux/arm/v7"]' in text
    conf = registries_conf("http://m:5000", ["docker.io", "ghcr.io"])
    assert conf.count("[[registry.mirror]]") == 2 and 'location = "m:5000"' in conf and "insecure = true" in conf
