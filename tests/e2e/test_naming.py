"""One naming for images, everywhere: every command resolves a name exactly as ``serve`` routes
a pull of ``localhost:5000/<name>`` (its default upstream, prefixes, aliases, and the config's
URL and credentials for that upstream), with the real Distribution registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from tests.conftest import Seeded
from tests.indexes import alpine_with_attestations
from tests.registry import Platproxy, Registry, cli, push_case

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def test_prefetch_and_cache_rm_name_images_as_a_pull_does(seeded: Seeded, platproxy: Start) -> None:
    """``serve --upstream URL`` names that upstream after its address; ``library/multi:1`` is what a
    pull of ``localhost:5000/library/multi:1`` gets, so prefetch and cache rm take that name too."""
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    server = ("--server", f"http://{proxy.address}")
    first = cli("prefetch", "library/multi:1", *server)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("ok      library/multi:1  linux/arm64/v8"), first.stdout
    twice = cli("prefetch", "library/multi:1", "library/multi:1", *server)
    lines = twice.stdout.splitlines()
    assert "already cached 2" in lines[0] and "from an earlier image of this run 2" in lines[1], twice.stdout
    removed = cli("cache", "--cache-dir", str(proxy.cache_dir), "rm", "library/multi:1")
    assert removed.returncode == 0, removed.stderr
    assert "library/multi:1" in removed.stdout


def test_resolve_and_platforms_reach_the_upstream_the_config_names_with_its_credentials(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    seeding = Registry(root).start()
    case = alpine_with_attestations()
    try:
        push_case(seeding, "library/multi:1", case)
    finally:
        seeding.stop()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("puller:" + bcrypt.hashpw(b"pulls3cret", bcrypt.gensalt(rounds=4)).decode() + "\n")
    private = Registry(root, port=seeding.port, htpasswd=htpasswd).start()  # the same storage, now private
    try:
        config = tmp_path / "c.toml"
        config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{private.url}"\nusername = "puller"\n'
                          'password = "pulls3cret"\n')  # fmt: skip
        resolved = cli("resolve", "multi:1", "--config", str(config), "--platform", "linux/arm64", "--json")
        assert resolved.returncode == 0, resolved.stderr
        assert case.digest_of("linux/arm64/v8") in resolved.stdout
        listed = cli("platforms", "library/multi:1", "--config", str(config), "--json")
        assert listed.returncode == 0, listed.stderr
        assert case.digest_of("linux/arm/v7") in listed.stdout
        assert "pulls3cret" not in resolved.stdout + resolved.stderr + listed.stdout + listed.stderr
    finally:
        private.stop()
