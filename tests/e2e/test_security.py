"""The mirror probed as an attacker would: no client shapes another client's answer.

Each test here reproduces one defect found by probing a running platproxy in front of a real
Distribution (the cache as an oracle across upstreams and repositories, one client's target
reaching another's answer, a header any client may send, limits before authentication), and
fails without its fix.  Faults a real registry cannot produce (nested indexes, floods,
trickles, hostile tag names) are in ``test_security_faults.py`` with the test double.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_MANIFEST
from tests.conftest import Seeded
from tests.indexes import Case
from tests.ocibuild import image, index
from tests.registry import Platproxy, Registry, config_args, push_case, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def features_case() -> Case:
    """amd64 twice: a build that needs AVX-512 and a baseline one."""
    named = {
        "avx512": image({"architecture": "amd64", "os": "linux", "features": ["avx512f"]}, label="avx512"),
        "plain": image({"architecture": "amd64", "os": "linux"}, label="plain"),
    }
    return Case(index(list(named.values())), [b for i in named.values() for b in (i.manifest, *i.blobs())], named)


FEATURE_RULE = """
[[clients]]
cidr = "127.0.0.2/32"
platform = "linux/amd64"
features = ["avx512f"]
"""


@pytest.mark.parametrize("rule_first", [True, False])
def test_one_clients_cpu_features_never_reach_anothers_answer(
    platproxy: Start, tmp_path: Path, rule_first: bool
) -> None:
    """A ``[[clients]]`` rule with ``features`` and a selector client of the same platform
    without them are two targets: each gets its own build, whichever pulls first."""
    registry = Registry(tmp_path / "registry").start()
    try:
        case = features_case()
        for tag in ("1", "2"):
            push_case(registry, f"library/feat:{tag}", case)
        proxy = platproxy(registry.url, "linux/amd64", config_args(tmp_path, FEATURE_RULE))
        accept = {"Accept": OCI_MANIFEST}

        def by_rule(tag: str) -> str:
            status, headers, _ = request(proxy.port, "GET", f"/v2/library/feat/manifests/{tag}", headers=accept,
                                         source="127.0.0.2")  # fmt: skip
            assert status == 200
            return headers["docker-content-digest"]

        def by_selector(tag: str) -> str:
            path = f"/v2/platform.linux.amd64/library/feat/manifests/{tag}"
            status, headers, _ = request(proxy.port, "GET", path, headers=accept)
            assert status == 200
            return headers["docker-content-digest"]

        first, second = (by_rule, by_selector) if rule_first else (by_selector, by_rule)
        got = {first: first("1"), second: second("2")}
        assert got[by_rule] == case.digest_of("avx512")
        assert got[by_selector] == case.digest_of("plain")
    finally:
        registry.stop()


def test_a_password_over_72_bytes_is_a_401_before_login(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode() + "\n")
    proxy = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, f'[auth]\nhtpasswd = "{htpasswd}"\n'))
    for user in ("alice", "nobody"):
        login = base64.b64encode(f"{user}:{'x' * 100}".encode()).decode()
        status, headers, body = request(proxy.port, "GET", "/v2/", headers={"Authorization": f"Basic {login}"})
        assert status == 401 and json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED", body
        assert headers["www-authenticate"] == 'Basic realm="platproxy"'
    login = base64.b64encode(b"alice:wonderland").decode()
    assert request(proxy.port, "GET", "/v2/", headers={"Authorization": f"Basic {login}"})[0] == 200
