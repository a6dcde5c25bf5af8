"""A real Docker Engine (Debian's docker.io, 20.10) pulling through platproxy as its
``registry-mirrors`` entry: an OCI index, a Docker manifest list and a nested index each end as
this host's manifest, and again from platproxy's cache once the upstream is stopped."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import indexes
from tests.clients import Engine, engine_root, start_engine, stop_engine
from tests.indexes import Case
from tests.registry import Platproxy, Registry, push_case

pytestmark = pytest.mark.e2e
__all__ = ["engine_root"]  # a fixture
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
IMAGES = {  # image -> the name of this host's entry in its case
    "multi:1": f"linux/{ARCH}" if ARCH == "amd64" else "linux/arm64/v8",
    "winlin:1": f"linux/{ARCH}",
    "nested:1": ARCH,
}


@pytest.fixture
def hub(tmp_path: Path, engine_root: Path) -> Iterator[tuple[Registry, dict[str, Case], Platproxy, Engine]]:
    """A registry standing in for Docker Hub, platproxy in front of it (resolving for this host),
    and a Docker engine whose only mirror is platproxy."""
    registry = Registry(tmp_path / "registry").start()
    cases = {"library/multi:1": indexes.alpine_with_attestations(), "library/winlin:1": indexes.windows_ltsc(),
             "library/nested:1": indexes.goauthentik_nested()}  # fmt: skip
    proxy: Platproxy | None = None
    engine: Engine | None = None
    try:
        for ref, case in cases.items():
            push_case(registry, ref, case)
        config = tmp_path / "hub.toml"
        config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{registry.url}"\n')
        proxy = Platproxy(tmp_path / "cache", "", extra=["--config", str(config)], log_dir=tmp_path).start()
        engine = start_engine(engine_root, f"http://{proxy.address}")
        yield registry, cases, proxy, engine
    finally:
        if engine is not None:
            stop_engine(engine)
        if proxy is not None:
            proxy.stop()
            assert "Traceback" not in proxy.log(), proxy.log()[-3000:]
        registry.stop()


def test_docker_pulls_this_hosts_manifest_through_the_mirror(
    hub: tuple[Registry, dict[str, Case], Platproxy, Engine],
) -> None:
    registry, cases, proxy, engine = hub

    def pull_all() -> None:
        for name, entry in IMAGES.items():
            pulled = engine.docker("pull", name)
            assert pulled.returncode == 0, pulled.stderr + (engine.root / "dockerd.log").read_text()[-2000:]
            shown = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}} {{.Architecture}}", name)
            repo_digests, architecture = shown.stdout.split()
            expected = cases[f"library/{name}"].digest_of(entry)
            assert f"{name.split(':')[0]}@{expected}" in json.loads(repo_digests), (name, shown)
            assert architecture == ARCH

    pull_all()
    assert proxy.wait_for_log('"cache": "miss"')
    removed = engine.docker("rmi", *IMAGES)
    assert removed.returncode == 0, removed.stderr
    registry.stop()
    pull_all()  # the same answers from platproxy's cache, with the upstream gone
