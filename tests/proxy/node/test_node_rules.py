"""Where each containerd reads hosts directories (from ``containerd config dump``), and each
runtime's drop-in (pure).  The dumps in ``tests/data/containerd`` are real, captured from
containerd 1.6, 1.7 and 2.1 (its README says how); 1.x keeps the CRI plugin's registry section,
2.x moved it to the images plugin ``io.containerd.cri.v1.images`` (containerd 2.0
docs/cri/config.md), and 2.2's default names two directories (docs/hosts.md; containerd#12636),
captured from 2.1 with that value set.  The small literal dumps below cover the same layouts."""

from __future__ import annotations

import json
from pathlib import Path

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


DUMPS = Path(__file__).parents[2] / "data" / "containerd"


@pytest.mark.parametrize(
    ("name", "paths"),
    [
        ("dump-1.6.toml", ["/etc/containerd/certs.d"]),
        ("dump-1.7.toml", ["/etc/containerd/certs.d"]),  # not the transfer service's empty config_path
        ("dump-2.1-from-v2.toml", ["/etc/containerd/certs.d"]),  # a version 2 config migrated by 2.x
        ("dump-2.1-two.toml", ["/etc/containerd/certs.d", "/etc/docker/certs.d"]),  # 2.2's default
        ("dump-2.1-default.toml", []),
    ],
)
def test_real_dumps(name: str, paths: list[str]) -> None:
    assert config_paths((DUMPS / name).read_text()) == paths


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
