"""End to end: the real registry (Distribution 2.8), platproxy as a real process, real skopeo."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from hostinfo import HostProfile, Platform
from proxy.oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
    UPSTREAM_ACCEPT,
    ClientCaps,
)
from proxy.oci.resolve import resolve_loading
from tests import indexes
from tests.conftest import Seeded, push_case, skopeo_copy
from tests.ocibuild import sha256
from tests.registry import Platproxy, Registry, cli, config_args, request, wait_http

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
ALL = {"Accept": UPSTREAM_ACCEPT}


def expected(seeded: Seeded, ref: str, spec: str) -> str:
    """What the resolver, run independently on the same bytes, picks for ``spec``."""
    case = seeded.cases[ref]
    decision = resolve_loading(
        case.top.data, HostProfile(platform=Platform.parse(spec)), ClientCaps(), case.contents().get
    )
    assert decision.chosen is not None
    return decision.chosen.digest


def digest_of(path: Path) -> str:
    return sha256(path.read_bytes())


@pytest.mark.parametrize(
    ("spec", "platform"),
    [("linux/amd64/v3", "linux/amd64"), ("linux/arm64", "linux/arm64/v8"), ("linux/arm/v6", "linux/arm/v6")],
)
def test_skopeo_pulls_the_resolved_manifest(
    seeded: Seeded, platproxy: Start, tmp_path: Path, spec: str, platform: str
) -> None:
    proxy = platproxy(seeded.registry.url, spec)
    done = skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    chosen = digest_of(tmp_path / "out" / "manifest.json")
    assert chosen == expected(seeded, "library/multi:1", spec)
    assert chosen == seeded.cases["library/multi:1"].digest_of(platform)
    config = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["digest"]
    blob = json.loads((tmp_path / "out" / config.split(":")[1]).read_text())
    assert f"{blob['os']}/{blob['architecture']}" == "/".join(platform.split("/")[:2])


def test_resolved_response_headers_and_head_agrees(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm/v7")
    case = seeded.cases["library/multi:1"]
    status, headers, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    assert status == 200
    assert headers["docker-content-digest"] == case.digest_of("linux/arm/v7") == sha256(body)
    assert headers["content-type"] == OCI_MANIFEST
    assert headers["x-platproxy-platform"] == "linux/arm/v7"
    assert headers["x-platproxy-resolved-from"] == case.top.digest
    assert headers["etag"] == f'"{headers["docker-content-digest"]}"'
    hstatus, hheaders, hbody = request(proxy.port, "HEAD", "/v2/library/multi/manifests/1", headers=ALL)
    assert (hstatus, hbody) == (200, b"")
    for key in ("docker-content-digest", "content-type", "content-length", "etag"):
        assert hheaders[key] == headers[key]
    # containerd: HEAD by tag, then GET by the digest it named
    s2, _, b2 = request(proxy.port, "GET", f"/v2/library/multi/manifests/{hheaders['docker-content-digest']}",
                         headers={"Accept": f"{OCI_MANIFEST}, */*"})  # fmt: skip
    assert s2 == 200 and b2 == body


def test_index_stays_available_by_digest(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    case = seeded.cases["library/multi:1"]
    request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    status, headers, body = request(proxy.port, "GET", f"/v2/library/multi/manifests/{case.top.digest}", headers=ALL)
    assert status == 200 and body == case.top.data and headers["content-type"] == OCI_INDEX
    blind = {"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"}
    status, _, body = request(proxy.port, "GET", f"/v2/library/multi/manifests/{case.top.digest}", headers=blind)
    error = json.loads(body)["errors"][0]
    assert status == 404 and error["code"] == "MANIFEST_UNKNOWN"
    assert error["detail"]["digest"] == case.digest_of("linux/arm64/v8")
    assert case.digest_of("linux/arm64/v8") in error["message"]


def test_old_engine_gets_the_chosen_manifest_in_a_form_it_reads(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    chosen = seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
    old = {"Accept": DOCKER_MANIFEST}
    status, headers, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=old)
    assert status == 200 and headers["content-type"] == DOCKER_MANIFEST
    assert headers["x-platproxy-converted-from"] == chosen and headers["x-platproxy-platform"] == "linux/arm64/v8"
    assert headers["docker-content-digest"] == sha256(body) != chosen
    # a Docker manifest list is served to the same engine: the chosen entry is schema 2 already
    status, headers, _ = request(
        proxy.port, "GET", "/v2/library/winlin/manifests/1", headers={"Accept": DOCKER_MANIFEST}
    )
    assert status == 200 and headers["content-type"] == DOCKER_MANIFEST
    assert headers["docker-content-digest"] == seeded.cases["library/winlin:1"].digest_of("linux/arm64")
    assert "x-platproxy-converted-from" not in headers
    # no Accept at all (Docker 1.6-1.9): signed schema 1
    status, headers, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1")
    assert status == 200 and headers["content-type"] == DOCKER_SCHEMA1_SIGNED


def test_list_aware_clients_can_be_given_the_index(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    extra = config_args(tmp_path, '[resolve]\nlist_aware_clients = "index"\n')
    proxy = platproxy(seeded.registry.url, "linux/arm64", extra)
    status, headers, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    assert status == 200 and body == seeded.cases["library/multi:1"].top.data
    status, headers, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers={"Accept": OCI_MANIFEST})
    assert headers["docker-content-digest"] == seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")


def test_nested_index_and_amd64_levels(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/amd64/v2")
    _, h, _ = request(proxy.port, "GET", "/v2/library/nested/manifests/1", headers=ALL)
    assert h["docker-content-digest"] == seeded.cases["library/nested:1"].digest_of("amd64")
    _, h, _ = request(proxy.port, "GET", "/v2/library/levels/manifests/1", headers=ALL)
    assert h["docker-content-digest"] == seeded.cases["library/levels:1"].digest_of("v2")
    assert h["x-platproxy-rank"] == "native"


def test_no_match_lists_every_entry(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/mips64le")
    status, _, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    error = json.loads(body)["errors"][0]
    assert status == 404 and error["code"] == "MANIFEST_UNKNOWN"
    assert error["detail"]["runs"] == ["linux/mips64le (native)"]
    assert len(error["detail"]["entries"]) == 16
    assert proxy.wait_for_log("nothing in the index runs here") == 1  # the log says why, not only 404
    line = json.loads(next(x for x in proxy.log().splitlines() if "nothing in the index runs here" in x))
    assert line["answer"] == "404" and len(line["verdicts"]) == 16
    assert any(v.startswith("linux/arm64/v8: ") for v in line["verdicts"])


@pytest.mark.faults
def test_pull_works_again_with_the_upstream_stopped(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "own-registry").start()
    push_case(registry, "library/multi:1", seeded.cases["library/multi:1"])
    extra = config_args(tmp_path, "[cache]\ntag_ttl = 0\n")
    proxy = platproxy(registry.url, "linux/arm/v7", extra)
    first = skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    registry.stop()
    again = skopeo_copy(f"{proxy.address}/library/multi:1", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    assert digest_of(tmp_path / "again" / "manifest.json") == digest_of(tmp_path / "first" / "manifest.json")
    assert proxy.wait_for_log('"cache": "stale"')
    status, _, body = request(proxy.port, "GET", "/v2/library/never-pulled/manifests/1", headers=ALL)
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    # and after a restart of platproxy itself, still from the cache
    proxy.stop()
    restarted = platproxy(registry.url, "linux/arm/v7", extra, cache=proxy.cache_dir)
    third = skopeo_copy(f"{restarted.address}/library/multi:1", tmp_path / "third")
    assert third.returncode == 0, third.stderr


def test_a_moved_tag_is_seen_after_its_ttl(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "own-registry").start()
    try:
        levels, multi = seeded.cases["library/levels:1"], seeded.cases["library/multi:1"]
        push_case(registry, "library/moving:1", levels)
        proxy = platproxy(registry.url, "linux/amd64/v3", config_args(tmp_path, "[cache]\ntag_ttl = 1.5\n"))
        _, h1, _ = request(proxy.port, "GET", "/v2/library/moving/manifests/1", headers=ALL)
        assert h1["docker-content-digest"] == levels.digest_of("v3")
        push_case(registry, "library/moving:1", multi)
        _, h2, _ = request(proxy.port, "GET", "/v2/library/moving/manifests/1", headers=ALL)
        assert h2["docker-content-digest"] == levels.digest_of("v3") and h2["x-platproxy-cache"] == "hit"
        time.sleep(1.6)
        _, h3, _ = request(proxy.port, "GET", "/v2/library/moving/manifests/1", headers=ALL)
        assert h3["docker-content-digest"] == multi.digest_of("linux/amd64")
        assert registry.requests_for("/v2/library/moving/manifests/1", "HEAD") == 1
    finally:
        registry.stop()


def test_digest_hits_never_contact_the_upstream(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    case = seeded.cases["library/multi:1"]
    digest = case.digest_of("linux/arm64/v8")
    request(proxy.port, "GET", f"/v2/library/multi/manifests/{digest}", headers=ALL)
    layer = case.images["linux/arm64/v8"].layers[0].digest
    request(proxy.port, "GET", f"/v2/library/multi/blobs/{layer}")
    before = (seeded.registry.requests_for(digest), seeded.registry.requests_for(layer))
    for _ in range(3):
        assert request(proxy.port, "GET", f"/v2/library/multi/manifests/{digest}", headers=ALL)[0] == 200
        assert request(proxy.port, "GET", f"/v2/library/multi/blobs/{layer}")[0] == 200
    assert (seeded.registry.requests_for(digest), seeded.registry.requests_for(layer)) == before


def test_tags_list_pagination(seeded: Seeded, platproxy: Start) -> None:
    registry = seeded.registry
    for tag in ("a", "b", "c", "d"):
        registry.push_manifest("library/multi", tag, seeded.cases["library/multi:1"].top)
    proxy = platproxy(registry.url, "linux/amd64")
    status, headers, body = request(proxy.port, "GET", "/v2/library/multi/tags/list?n=2")
    assert status == 200 and json.loads(body) == {"name": "library/multi", "tags": ["1", "a"]}
    assert headers["link"] == '</v2/library/multi/tags/list?n=2&last=a>; rel="next"'
    _, headers, body = request(proxy.port, "GET", "/v2/library/multi/tags/list?n=2&last=a")
    assert json.loads(body)["tags"] == ["b", "c"]
    _, headers, body = request(proxy.port, "GET", "/v2/library/multi/tags/list?n=2&last=c")
    assert json.loads(body)["tags"] == ["d"] and "link" not in headers
    _, headers, body = request(proxy.port, "GET", "/v2/library/multi/tags/list?n=0")
    assert json.loads(body)["tags"] == [] and "link" not in headers


def test_referrers_without_upstream_support_is_an_empty_index(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/amd64")
    digest = seeded.cases["library/multi:1"].digest_of("linux/amd64")
    status, headers, body = request(proxy.port, "GET", f"/v2/library/multi/referrers/{digest}")
    assert status == 200 and headers["content-type"] == OCI_INDEX
    assert json.loads(body)["manifests"] == []


def test_ns_and_path_prefix_routing(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    name = f"127.0.0.1:{seeded.registry.port}"
    want = seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
    _, h, _ = request(proxy.port, "GET", f"/v2/library/multi/manifests/1?ns={name}", headers=ALL)
    assert h["docker-content-digest"] == want
    _, h, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers=ALL)
    assert h["docker-content-digest"] == want
    status, _, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1?ns=docker.io", headers=ALL)
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


def test_serve_with_no_arguments_uses_the_embedded_defaults(tmp_path: Path) -> None:
    """127.0.0.1:5000, Docker Hub, the user's cache directory; Hub is unreachable here: a clear 503."""
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": ""}
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_http(5000, proc=proc)
        assert request(5000, "GET", "/v2/")[0] == 200
        assert (tmp_path / ".cache" / "platproxy" / "index.db").exists()
        status, _, body = request(5000, "GET", "/v2/library/alpine/manifests/latest", headers=ALL)
        assert status in (503, 502) and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"upstreams docker.io=https://registry-1.docker.io" in err


def test_online_resolve_and_platforms(seeded: Seeded) -> None:
    image = f"127.0.0.1:{seeded.registry.port}/library/multi:1"
    done = cli("resolve", image, "--platform", "linux/arm/v6", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["chosen"]["digest"] == expected(seeded, "library/multi:1", "linux/arm/v6")
    assert cli("resolve", image, "--platform", "linux/mips64le").returncode == 1
    rows = json.loads(cli("platforms", image, "--json").stdout)
    assert [r["kind"] for r in rows].count("attestation") == 8
    assert {r["platform"] for r in rows if r["kind"] == "image"} >= {"linux/arm/v6", "linux/arm64/v8", "linux/386"}
    levels = json.loads(cli("platforms", f"127.0.0.1:{seeded.registry.port}/library/levels:1", "--json").stdout)
    nested = json.loads(cli("platforms", f"127.0.0.1:{seeded.registry.port}/library/nested:1", "--json").stdout)
    assert [r["depth"] for r in nested].count(1) == 4
    assert all(r["warnings"] == [] for r in levels)
    assert cli("platforms", "Bad Name!").returncode == 2
    assert cli("resolve").returncode == 2
    # the same client descriptions as resolve: the entry that client would get is marked
    arm64 = "docker/20.10.24 go/go1.19.8 os/linux arch/arm64"
    marked = json.loads(cli("platforms", image, "--user-agent", arm64, "--json").stdout)
    assert [r["digest"] for r in marked if r.get("chosen")] == [expected(seeded, "library/multi:1", "linux/arm64/v8")]
    shown = cli("platforms", image, "--user-agent", arm64)
    assert "client: resolved for linux/arm64/v8 (user-agent)" in shown.stdout and "* linux/arm64/v8" in shown.stdout
    tool = cli("platforms", image, "--user-agent", "cosign/v2.2.3 (linux; amd64)")
    assert "gets the index as published (tool)" in tool.stdout and "* " not in tool.stdout
    assert "index as published" in cli("resolve", image, "--user-agent", "buildkit/v0.12.5").stdout


def test_platforms_through_platproxy_names_the_manifest_it_serves(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    rows = json.loads(cli("platforms", f"{proxy.address}/library/multi:1", "--json").stdout)
    assert [(r["platform"], r["digest"]) for r in rows] == [
        ("(single manifest)", expected(seeded, "library/multi:1", "linux/arm64/v8"))
    ]  # platproxy resolved the tag for its host: the digest is that manifest's, never empty


def test_output_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    case = indexes.amd64_levels()
    (tmp_path / "index.json").write_bytes(case.top.data)
    commands = (
        ["hostinfo"],
        ["resolve", "--index", str(tmp_path / "index.json"), "--platform", "linux/amd64", "--json"],
    )
    for args in commands:
        read_end, write_end = os.pipe()
        os.close(read_end)  # as `| head` does once it has its lines
        done = subprocess.run([sys.executable, "-m", "proxy.cli", *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)  # fmt: skip
        os.close(write_end)
        assert (done.returncode, done.stderr) == (141, ""), args


def test_concurrent_cold_tag_requests_cause_one_upstream_fetch(seeded: Seeded, platproxy: Start) -> None:
    case = seeded.cases["library/multi:1"]
    seeded.registry.push_manifest("library/multi", "burst", case.top)
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    url = f"http://{proxy.address}/v2/library/multi/manifests/burst"

    async def fetch(session: aiohttp.ClientSession) -> tuple[int, str]:
        async with session.get(url, headers=ALL) as resp:
            return resp.status, sha256(await resp.read())

    async def main() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(fetch(session) for _ in range(20)))

    assert asyncio.run(main()) == [(200, case.digest_of("linux/arm64/v8"))] * 20
    assert seeded.registry.requests_for("/v2/library/multi/manifests/burst") == 1
