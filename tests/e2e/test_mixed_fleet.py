"""One central platproxy for a mixed fleet: each client gets its own platform's manifest, from a
``[[clients]]`` rule on its address (the test connects from 127.0.0.2 / 127.0.0.3) or from the
platform its Docker ``User-Agent`` names, else this host's; each answer is kept per platform and
served again with the upstream stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_SCHEMA1_SIGNED, OCI_MANIFEST
from tests.conftest import Seeded
from tests.indexes import Case
from tests.ocibuild import image, index
from tests.registry import Platproxy, Registry, cli, config_args, push_case, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]

PLATFORMS = ["linux/amd64", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8", "linux/386",
             "linux/ppc64le", "linux/riscv64", "linux/s390x", "linux/mips64le"]  # fmt: skip
RULES = """
[[clients]]
cidr = "127.0.0.2/32"
platform = "linux/arm64/v8"
[[clients]]
cidr = "127.0.0.3"
platform = "linux/arm/v6"
"""


def fleet_case() -> Case:
    named = {}
    for spec in PLATFORMS:
        parts = spec.split("/")
        platform = {"os": parts[0], "architecture": parts[1], **({"variant": parts[2]} if len(parts) > 2 else {})}
        named[spec] = image(platform)
    return Case(index(list(named.values())), [b for i in named.values() for b in (i.manifest, *i.blobs())], named)


def docker(arch: str, version: str = "20.10.24") -> str:
    return f"docker/{version} go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/{arch}"


def ask(port: int, source: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A tag request from ``source`` (any 127.0.0.0/8 address)."""
    return request(port, "GET", "/v2/library/fleet/manifests/1", headers={"Accept": OCI_MANIFEST, **headers},
                   source=source)  # fmt: skip


def test_each_client_gets_its_own_platform(platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry").start()
    try:
        case = fleet_case()
        push_case(registry, "library/fleet:1", case)
        proxy = platproxy(registry.url, "", config_args(tmp_path, RULES))
        expected = {  # (source address, headers) -> the entry it must get, and why
            ("127.0.0.1", docker("arm64")): ("linux/arm64/v8", "user-agent"),
            ("127.0.0.1", docker("arm")): ("linux/arm/v7", "user-agent"),  # default variant v7
            ("127.0.0.1", docker("s390x")): ("linux/s390x", "user-agent"),
            ("127.0.0.1", docker("amd64")): ("linux/amd64", "host"),
            ("127.0.0.1", "skopeo/1.9.3"): ("linux/amd64", "host"),
            ("127.0.0.2", docker("amd64")): ("linux/arm64/v8", "rule"),  # a rule beats the User-Agent
            ("127.0.0.3", "containerd/1.6.20~ds1"): ("linux/arm/v6", "rule"),
        }

        def check_all() -> None:
            for (source, agent), (entry, why) in expected.items():
                status, headers, _ = ask(proxy.port, source, {"User-Agent": agent})
                assert status == 200, (source, agent)
                assert headers["docker-content-digest"] == case.digest_of(entry), (source, agent)
                assert headers["x-platproxy-target"].endswith(f"({why})")
            # X-Forwarded-For from a peer that is not a trusted proxy: ignored
            _, headers, _ = ask(proxy.port, "127.0.0.1", {"X-Forwarded-For": "127.0.0.2"})
            assert headers["docker-content-digest"] == case.digest_of("linux/amd64")
            # a list-blind Docker 1.9 on arm gets an arm manifest, converted to schema 1
            status, headers, body = request(proxy.port, "GET", "/v2/library/fleet/manifests/1",
                                            headers={"User-Agent": docker("arm", "1.9.1")})  # fmt: skip
            assert status == 200 and headers["content-type"] == DOCKER_SCHEMA1_SIGNED
            assert json.loads(body)["architecture"] == "arm"
            assert headers["x-platproxy-converted-from"] == case.digest_of("linux/arm/v7")

        check_all()
        assert proxy.wait_for_log('"target": "linux/arm64/v8 (rule)"')
        listing = cli("cache", "--cache-dir", str(proxy.cache_dir), "ls", "--json")
        assert listing.returncode == 0, listing.stderr
        rows = json.loads(listing.stdout)["tags"]
        resolved_for = {row["resolved_for"] for row in rows if row["image"].endswith("library/fleet:1")}
        assert {"linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/s390x"} <= resolved_for
    finally:
        registry.stop()
    check_all()  # every platform's answer was kept: served with the upstream gone


def test_forwarded_for_counts_behind_a_trusted_proxy(platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry").start()
    try:
        case = fleet_case()
        push_case(registry, "library/fleet:1", case)
        extra = RULES + '\n[resolve]\ntrusted_proxies = ["127.0.0.4/32"]\n'
        proxy = platproxy(registry.url, "linux/amd64", config_args(tmp_path, extra))
        _, headers, _ = ask(proxy.port, "127.0.0.4", {"X-Forwarded-For": "127.0.0.3"})
        assert headers["docker-content-digest"] == case.digest_of("linux/arm/v6")
        _, headers, _ = ask(proxy.port, "127.0.0.5", {"X-Forwarded-For": "127.0.0.3"})
        assert headers["docker-content-digest"] == case.digest_of("linux/amd64")
    finally:
        registry.stop()


@pytest.mark.parametrize(("host", "entry"), [("linux/amd64/v3", "v3"), ("linux/amd64/v4", "v3"),
                                             ("linux/amd64/v2", "v2"), ("", "")])  # fmt: skip
def test_docker_on_this_hosts_architecture_gets_what_it_got_before(
    seeded: Seeded, platproxy: Start, tmp_path: Path, host: str, entry: str
) -> None:
    """An ``arch/amd64`` User-Agent on an amd64 host means this host's detected profile (its level),
    never the ``amd64 -> v1`` default variant: the same answer as a client that names nothing."""
    proxy = platproxy(seeded.registry.url, host, config_args(tmp_path, RULES))
    answers = set()
    for agent in ("", docker("amd64"), docker("x86_64"), "containerd/1.6.20~ds1"):
        status, headers, _ = request(proxy.port, "GET", "/v2/library/levels/manifests/1",
                                     headers={"Accept": OCI_MANIFEST, "User-Agent": agent})  # fmt: skip
        assert status == 200
        answers.add((headers["docker-content-digest"], headers["x-platproxy-target"].split(" (")[1]))
    assert len(answers) == 1 and next(iter(answers))[1] == "host)"
    if entry:  # a pinned host level; "" is this machine's own detection, whatever it is
        assert next(iter(answers))[0] == seeded.cases["library/levels:1"].digest_of(entry)
