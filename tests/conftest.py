"""Shared fixtures: a real Distribution registry seeded with real multi-platform images, and
platproxy started as a real process in front of it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import indexes
from tests.indexes import Case
from tests.ocibuild import Blob, gzip_layer, image, index
from tests.registry import Platproxy, Registry, push_case
from tests.tokenserver import TokenUpstream

BIG_LAYER_MIB = 64


@dataclass
class Seeded:
    registry: Registry
    cases: dict[str, Case]
    big_layer: Blob


def big_case() -> tuple[Case, Blob]:
    """An image whose two platforms share one large base layer (as real images share bases)."""
    base = gzip_layer({"opt/big.bin": os.urandom(BIG_LAYER_MIB * 2**20)})
    named = {}
    for arch in ("amd64", "arm64"):
        top_layer = gzip_layer({"etc/arch": arch.encode()})
        named[f"linux/{arch}"] = image({"architecture": arch, "os": "linux"}, [base, top_layer])
    top = index(list(named.values()))
    blobs = [b for img in named.values() for b in (img.manifest, *img.blobs())]
    return Case(top, blobs, named), base


def seed(registry: Registry) -> Seeded:
    cases = {
        "library/multi:1": indexes.alpine_with_attestations(),
        "library/winlin:1": indexes.windows_ltsc(),
        "library/levels:1": indexes.amd64_levels(),
        "library/nested:1": indexes.goauthentik_nested(),
    }
    big, big_layer = big_case()
    cases["library/big:1"] = big
    for ref, case in cases.items():
        push_case(registry, ref, case)
    return Seeded(registry, cases, big_layer)


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    registry = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield seed(registry)
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def token_upstream(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenUpstream]:
    """A registry with token auth, as Docker Hub and GHCR run (``tests/tokenserver.py``):
    ``team-a/app:1``, ``team-b/app:1`` and ``public/app:1``, each the multi-platform image."""
    refs = ("team-a/app:1", "team-b/app:1", "public/app:1")
    upstream = TokenUpstream.start(tmp_path_factory.mktemp("tokenauth"), seeded.cases["library/multi:1"], refs)
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture
def platproxy(tmp_path: Path) -> Iterator[Callable[..., Platproxy]]:
    started: list[Platproxy] = []

    def start(
        upstream: str, platform: str = "", extra: list[str] | None = None, cache: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Platproxy:  # fmt: skip
        cache_dir = cache or tmp_path / f"cache{len(started)}"
        proxy = Platproxy(cache_dir, upstream, platform, extra or [], log_dir=tmp_path, env=env or {}).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
    for proxy in started:  # never a traceback, whatever the test did
        assert "Traceback" not in proxy.log(), proxy.log()[-3000:]


def skopeo_copy(source: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("skopeo")
    assert tool, "skopeo must be installed (scripts/test.sh installs it)"
    return subprocess.run(
        [tool, "--insecure-policy", "copy", "--src-tls-verify=false", *extra, f"docker://{source}", f"dir:{dest}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
