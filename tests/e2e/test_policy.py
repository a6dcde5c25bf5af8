"""[[policy]] against a real registry: a denied name is never fetched, cached content a new rule
denies is no longer served (by tag or by digest), and skopeo is told which rule."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Seeded, skopeo_copy
from tests.registry import Platproxy, cli, config_args, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
OCI = {"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"}


def test_a_new_rule_stops_cached_content_and_never_reaches_the_upstream(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    upstream = f'[[upstream]]\nname = "reg"\nurl = "{seeded.registry.url}"\n'
    first = platproxy("", "linux/arm64", config_args(tmp_path, upstream))
    assert skopeo_copy(f"{first.address}/reg/library/multi:1", tmp_path / "a").returncode == 0
    first.stop()
    case = seeded.cases["library/multi:1"]
    chosen = case.images["linux/arm64/v8"]
    rules = ('[[policy]]\naction = "deny"\nrepository = "library/multi"\n'
             '[[policy]]\naction = "deny"\nrepository = "library/levels"\ntag = "1"\n')  # fmt: skip
    config = config_args(tmp_path, upstream + rules)
    shown = cli("config", "check", config[1])
    assert shown.returncode == 0
    assert "policy rule 1: deny */library/multi:*" in shown.stderr
    assert "policy rule 2: deny */library/levels:1" in shown.stderr
    assert "policy: anything no rule matches is allowed" in shown.stderr
    assert [r["action"] for r in tomllib.loads(shown.stdout)["policy"]] == ["deny", "deny"]
    asked = seeded.registry.requests_for("/v2/library/multi/")
    proxy = platproxy("", "linux/arm64", config, cache=first.cache_dir)  # the same, warm cache
    base = "/v2/reg/library/multi"
    paths = (f"{base}/manifests/1", f"{base}/manifests/{chosen.manifest.digest}",
             f"{base}/blobs/{chosen.layers[0].digest}", f"{base}/tags/list")  # fmt: skip
    for path in paths:
        status, _, body = request(proxy.port, "GET", path, headers=OCI)
        error = json.loads(body)["errors"][0]
        assert (status, error["code"]) == (403, "DENIED"), path
        assert "[[policy]] rule 1 (deny */library/multi:*)" in error["message"] and error["detail"]["rule"] == 1
    assert seeded.registry.requests_for("/v2/library/multi/") == asked  # decided before any upstream contact
    # a rule for one tag denies that tag, not the repository's other tags nor content by digest
    status, _, body = request(proxy.port, "GET", "/v2/reg/library/levels/manifests/1", headers=OCI)
    assert status == 403 and "rule 2" in json.loads(body)["errors"][0]["message"]
    levels = seeded.cases["library/levels:1"].top.digest
    assert request(proxy.port, "GET", f"/v2/reg/library/levels/manifests/{levels}", headers=OCI)[0] == 200
    assert request(proxy.port, "GET", "/v2/reg/library/nested/manifests/1", headers=OCI)[0] == 200
    done = skopeo_copy(f"{proxy.address}/reg/library/multi:1", tmp_path / "b")
    assert done.returncode != 0 and "denied" in done.stderr.lower()
    assert proxy.wait_for_log('"denied": "[[policy]] rule 1 (deny */library/multi:*)"')


def test_an_allow_list_closes_everything_else(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    text = (f'[[upstream]]\nname = "reg"\nurl = "{seeded.registry.url}"\n'
            '[[policy]]\naction = "allow"\nupstream = "reg"\nrepository = "library/m*"\n')  # fmt: skip
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, text))
    assert skopeo_copy(f"{proxy.address}/reg/library/multi:1", tmp_path / "a").returncode == 0
    status, _, body = request(proxy.port, "GET", "/v2/reg/library/levels/manifests/1", headers=OCI)
    assert status == 403 and "no [[policy]] rule allows it" in json.loads(body)["errors"][0]["message"]
