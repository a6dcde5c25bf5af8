"""A child platproxy chained to a parent one (``parent = true``): the child resolves for its own
platform, the parent fetches only what the child asked for; and parent mode in front of a plain
registry.  The real Distribution registry of the session upstream, real skopeo clients.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import Seeded, skopeo_copy
from tests.indexes import check_pulled, fresh_case
from tests.ocibuild import sha256
from tests.registry import Platproxy, config_args, push_case, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def cached_digests(cache: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (cache / "blobs" / "sha256").glob("*/*")}


def test_child_resolves_for_its_own_platform_through_a_parent(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    case = fresh_case([
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
        {"architecture": "arm64", "os": "linux"},
    ], layer_mib=1)  # fmt: skip
    push_case(seeded.registry, "library/chained:1", case)
    upstream_name = seeded.registry.url.split("//")[1]
    # The parent's default upstream is elsewhere: only the child's ?ns= reaches the registry.
    parent_args = config_args(
        tmp_path,
        f"""
[[upstream]]
name = "elsewhere.example"
url = "http://127.0.0.1:9"
[[upstream]]
name = "{upstream_name}"
url = "{seeded.registry.url}"
[resolve]
child_proxies = ["127.0.0.1/32"]
""",
    )
    parent = platproxy("", "linux/amd64", parent_args, cache=tmp_path / "parent")
    child_args = config_args(
        tmp_path,
        f"""
[[upstream]]
name = "{upstream_name}"
url = "http://{parent.address}"
parent = true
""",
    )
    child = platproxy("", "linux/arm/v7", child_args, cache=tmp_path / "child")
    done = skopeo_copy(f"{child.address}/library/chained:1", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    check_pulled(tmp_path / "out", case, "linux/arm/v7")

    arm = case.images["linux/arm/v7"]
    served = {arm.manifest.digest, arm.config.digest, *(layer.digest for layer in arm.layers)}
    assert cached_digests(tmp_path / "child") == served | {case.top.digest}  # + the index it resolved from
    assert cached_digests(tmp_path / "parent") == served | {case.top.digest}  # the amd64 manifest never fetched
    # the parent, asked directly, still resolves for its own host
    status, headers, _ = request(parent.port, "GET", f"/v2/library/chained/manifests/1?ns={upstream_name}",
                                 headers={"Accept": UPSTREAM_ACCEPT})  # fmt: skip
    assert status == 200 and headers["docker-content-digest"] == case.digest_of("linux/amd64")


def test_parent_mode_also_works_in_front_of_a_plain_registry(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    """Distribution ignores ?ns= and the resolve header: the child gets the index and resolves it."""
    name = seeded.registry.url.split("//")[1]
    args = config_args(tmp_path, f'[[upstream]]\nname = "{name}"\nurl = "{seeded.registry.url}"\nparent = true\n')
    child = platproxy("", "linux/arm64", args)
    done = skopeo_copy(f"{child.address}/library/multi:1", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sha256((tmp_path / "out" / "manifest.json").read_bytes()) == seeded.cases["library/multi:1"].digest_of(
        "linux/arm64/v8"
    )


def test_a_parent_that_does_not_count_the_child_is_named_in_the_childs_log(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    """Without ``[resolve] child_proxies`` the parent ignores the child's ``X-Platproxy-Resolve``
    (any client could send it) and resolves for itself: the child says what to configure."""
    upstream_name = seeded.registry.url.split("//")[1]
    parent = platproxy(seeded.registry.url, "linux/amd64", cache=tmp_path / "parent")
    child_args = config_args(tmp_path, f'[[upstream]]\nname = "{upstream_name}"\nurl = "http://{parent.address}"\n'
                                       "parent = true\n")  # fmt: skip
    child = platproxy("", "linux/arm64", child_args, cache=tmp_path / "child")
    status, _, _ = request(child.port, "GET", "/v2/library/multi/manifests/1", headers={"Accept": UPSTREAM_ACCEPT})
    assert status in (200, 404)
    assert child.wait_for_log("child_proxies")
    assert parent.wait_for_log("X-Platproxy-Resolve ignored")
