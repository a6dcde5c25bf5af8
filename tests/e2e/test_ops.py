"""Operations: metrics, health, config layering, as an operator sees them."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_MANIFEST, UPSTREAM_ACCEPT
from tests.conftest import Seeded, push_case, skopeo_copy
from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy, Registry, cli, config_args, free_port, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
ALL = {"Accept": UPSTREAM_ACCEPT}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_hit_miss_coalesced_and_stale(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg").start()
    push_case(registry, "library/multi:1", seeded.cases["library/multi:1"])
    slow = FakeUpstream(chunk_delay=0.01).start()
    try:
        config = (f'[[upstream]]\nname = "reg"\nurl = "{registry.url}"\n'
                  f'[[upstream]]\nname = "slow"\nurl = "{slow.url}"\n[cache]\ntag_ttl = 0\n')  # fmt: skip
        proxy = platproxy("", "linux/arm64", config_args(tmp_path, config))
        assert request(proxy.port, "GET", "/v2/reg/library/multi/manifests/1", headers=ALL)[0] == 200  # miss
        assert request(proxy.port, "GET", "/v2/reg/library/multi/manifests/1", headers=ALL)[0] == 200  # revalidated
        digest = seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
        assert request(proxy.port, "GET", f"/v2/reg/library/multi/manifests/{digest}", headers=ALL)[0] == 200  # hit
        registry.stop()
        assert request(proxy.port, "GET", "/v2/reg/library/multi/manifests/1", headers=ALL)[0] == 200  # stale
        blob = slow.add_blob(os.urandom(1 << 20))
        results: list[int] = []

        def pull() -> None:
            results.append(request(proxy.port, "GET", f"/v2/slow/x/blobs/{blob}")[0])

        threads = [threading.Thread(target=pull) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200, 200, 200]
        text = request(proxy.port, "GET", "/metrics")[2].decode()
        assert metric(text, "platproxy_cache_outcomes_total", kind="manifests", outcome="miss") == 1
        assert metric(text, "platproxy_cache_outcomes_total", kind="manifests", outcome="revalidated") == 1
        assert metric(text, "platproxy_cache_outcomes_total", kind="manifests", outcome="hit") == 1
        assert metric(text, "platproxy_cache_outcomes_total", kind="manifests", outcome="stale") == 1
        assert metric(text, "platproxy_stale_serves_total") == 1
        assert metric(text, "platproxy_coalesced_waiters_total") == 2
        assert metric(text, "platproxy_cache_outcomes_total", kind="blobs", outcome="miss") == 1
        assert metric(text, "platproxy_resolutions_total", platform="linux/arm64/v8", label="native") == 1
        assert metric(text, "platproxy_upstream_errors_total", upstream="reg", kind="unreachable") >= 1
        assert metric(text, "platproxy_bytes_fetched_total", upstream="slow") == 1 << 20
        assert metric(text, "platproxy_bytes_served_total", route="blobs") == 3 << 20
        assert metric(text, "platproxy_requests_total", route="manifests", method="GET", status="200") == 4
        assert metric(text, "platproxy_upstream_request_seconds_count", upstream="reg") >= 2
    finally:
        slow.stop()
        registry.stop()


def test_health_and_readiness(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    config = (f'[[upstream]]\nname = "reg"\nurl = "{seeded.registry.url}"\n'
              f'[[upstream]]\nname = "gone"\nurl = "http://127.0.0.1:{free_port()}"\n')  # fmt: skip
    proxy = platproxy("", "linux/amd64", config_args(tmp_path, config))
    assert json.loads(request(proxy.port, "GET", "/healthz")[2]) == {"status": "ok"}
    status, _, body = request(proxy.port, "GET", "/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["cache"]["writable"] is True
    assert ready["upstreams"]["reg"]["reachable"] is True and ready["upstreams"]["gone"]["reachable"] is False
    (proxy.cache_dir / "tmp").chmod(0o500)
    try:
        if os.geteuid() == 0:  # root writes anywhere: make the directory unusable another way
            (proxy.cache_dir / "tmp").chmod(0o700)
            os.rename(proxy.cache_dir / "tmp", proxy.cache_dir / "tmp.moved")
            (proxy.cache_dir / "tmp").write_text("not a directory")
        status, _, body = request(proxy.port, "GET", "/readyz")
        assert status == 503 and json.loads(body)["cache"]["writable"] is False
    finally:
        if (proxy.cache_dir / "tmp.moved").exists():
            (proxy.cache_dir / "tmp").unlink()
            os.rename(proxy.cache_dir / "tmp.moved", proxy.cache_dir / "tmp")
        (proxy.cache_dir / "tmp").chmod(0o700)


def test_ops_endpoints_move_to_their_own_port(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    ops_port = free_port()
    proxy = platproxy(
        seeded.registry.url, "linux/amd64", config_args(tmp_path, f'[metrics]\nlisten = "127.0.0.1:{ops_port}"\n')
    )
    assert request(ops_port, "GET", "/healthz")[0] == 200
    assert b"platproxy_requests_total" in request(ops_port, "GET", "/metrics")[2]
    assert request(proxy.port, "GET", "/metrics")[0] == 404
    assert request(proxy.port, "GET", "/v2/")[0] == 200


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    upstream = '[[upstream]]\nname = "x"\nurl = "https://x.example"\nusername = "u"\npassword = "hunter2"\n'
    path.write_text('listen = "127.0.0.1:6000"\n[cache]\ntag_ttl = "1m"\ndir = "/from/file"\n' + upstream)
    out = json.loads(cli("config", "check", "--json", str(path), env={"PLATPROXY_CACHE__TAG_TTL": "2h"}).stdout)
    assert out["listen"] == "127.0.0.1:6000" and out["cache"]["tag_ttl"] == 7200 and out["cache"]["dir"] == "/from/file"
    assert out["upstreams"][0]["password"] == "***"
    from proxy.config import load_config

    env = {
        "PLATPROXY_LISTEN": "127.0.0.1:7000",
        "PLATPROXY_CACHE__DIR": "/from/env",
        "PLATPROXY_UPSTREAMS__0__PASSWORD": "p",
    }
    config = load_config(path, {"cache.dir": "/from/flag"}, env)
    assert (config.listen, config.cache.dir, config.upstreams[0].password) == ("127.0.0.1:7000", "/from/flag", "p")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (
            ("config", "check"),
            {"PLATPROXY_LISTEN": "nowhere"},
            "config key listen (from PLATPROXY_LISTEN): expected HOST:PORT",
        ),
        (
            ("config", "check"),
            {"PLATPROXY_UPSTREAMS__3__URL": "x"},
            "PLATPROXY_UPSTREAMS__3__URL: upstreams has no entry 3",
        ),
        (("serve", "--listen", "bad"), {}, "config key listen (from a command-line flag)"),
        (("serve", "--platform", "linux/arm/v7/z"), {}, "config key [platform] override"),
        (("serve", "--upstream", "ftp://x"), {}, "--upstream ftp://x"),
        (("config", "check", "/nonexistent.toml"), {}, "cannot read config"),
        (
            ("serve",),
            {"PLATPROXY_COMPAT__SIGNING_KEY": "/nonexistent/key.pem"},
            "config key [compat] signing_key: cannot read the schema 1 signing key /nonexistent/key.pem",
        ),
        (("serve",), {"PLATPROXY_COMPAT__SIGNING_KEY": __file__}, "is not an unencrypted PEM private key"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(args: tuple[str, ...], env: dict[str, str], needle: str) -> None:
    done = cli(*args, env=env)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_prefetch_two_platforms_fetches_each_blob_once_and_nothing_else(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/amd64")
    case = seeded.cases["library/multi:1"]
    image = f"127.0.0.1:{seeded.registry.port}/library/multi:1"
    wanted = [case.images["linux/arm64/v8"], case.images["linux/arm/v7"]]
    before = {b.digest: seeded.registry.requests_for(b.digest) for b in case.blobs}
    done = cli("prefetch", image, "--platform", "linux/arm64", "--platform", "linux/arm/v7",
               "--server", f"http://{proxy.address}", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["platform"] for r in results] == ["linux/arm64/v8", "linux/arm/v7"]
    assert [r["manifest"] for r in results] == [w.manifest.digest for w in wanted]
    wanted_blobs = {b.digest for w in wanted for b in w.blobs()}
    every_blob = {b.digest for i in case.images.values() for b in i.blobs()}
    fetched = {d: seeded.registry.requests_for(d) - before[d] for d in every_blob}
    assert {d: n for d, n in fetched.items() if d in wanted_blobs} == {d: 1 for d in wanted_blobs}
    assert {d: n for d, n in fetched.items() if d not in wanted_blobs and n} == {}
    cached = {f"sha256:{p.name}" for p in proxy.cache_dir.joinpath("blobs").glob("*/*/*")}
    assert wanted_blobs <= cached
    again = cli("prefetch", image, "--server", f"http://{proxy.address}")
    assert again.returncode == 0 and "linux/amd64/v1" in again.stdout
    assert "fetched 2 blob(s)" in again.stdout and "already cached 0" in again.stdout
    # what was warmed is what those platforms' clients ask for: their tag requests are record hits
    asked = seeded.registry.requests_for("/v2/library/multi/manifests/")
    for arch, entry in (("arm64", wanted[0]), ("arm", wanted[1])):
        agent = f"docker/20.10.24 go/go1.19.8 os/linux arch/{arch}"
        status, headers, _ = request(proxy.port, "GET", "/v2/library/multi/manifests/1",
                                     headers={"User-Agent": agent, "Accept": OCI_MANIFEST})  # fmt: skip
        assert (status, headers["x-platproxy-cache"]) == (200, "hit"), arch
        assert headers["docker-content-digest"] == entry.manifest.digest
    assert seeded.registry.requests_for("/v2/library/multi/manifests/") == asked
    bad = cli("prefetch", image, "--platform", "linux/amd65", "--server", f"http://{proxy.address}")
    assert bad.returncode == 2 and "amd65" in bad.stderr and "Traceback" not in bad.stderr


def test_prefetch_goes_on_past_bad_images_and_reports_each(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    registry = f"127.0.0.1:{seeded.registry.port}"
    images = [f"{registry}/library/nothere:1", "Bad/Name:1", f"{registry}/library/multi:1", f"{registry}/library//x:1"]
    server = ("--server", f"http://{proxy.address}")
    done = cli("prefetch", *images, *server, "--json")
    assert done.returncode == 1, done.stderr
    results = json.loads(done.stdout)
    assert [(r["image"], r["ok"]) for r in results] == [
        (f"{registry}/library/nothere:1", False), ("Bad/Name:1", False), (f"{registry}/library/multi:1", True),
        (f"{registry}/library//x:1", False),
    ]  # fmt: skip
    assert results[0]["errors"] == ["404 MANIFEST_UNKNOWN: library/nothere:1 not found upstream"]
    assert results[1]["errors"] == ["bad image reference: invalid repository name: component 'Bad' has upper-case "
                                    "letters (names are lower-case)"]  # fmt: skip
    assert "an empty path component" in results[3]["errors"][0]
    multi = results[2]
    assert multi["fetched"] == 2 and multi["hits"] == 0 and multi["fetched_bytes"] > 0
    text = cli("prefetch", *images, *server)
    assert text.returncode == 1
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith(f"failed  {registry}/library/nothere:1  (the server's host): 404 ")
    assert "@" not in lines[0] and "{" not in text.stdout and "[" not in text.stdout
    assert lines[2].startswith(f"ok      {registry}/library/multi:1  linux/arm64/v8  sha256:")
    assert "fetched 0 blob(s), 0 B; already cached 2, " in lines[2]  # the second time: hits, apart from fetches
    assert (
        lines[-1].startswith("1 of 4 prefetched: fetched 0 blob(s), 0 B; already cached 2, ")
        and "3 failed" in lines[-1]
    )
    bad = cli("prefetch", images[2], "--server", proxy.address)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"platproxy prefetch: --server {proxy.address}: give the running platproxy's URL "
                                  "with its scheme, e.g. http://127.0.0.1:5000")  # fmt: skip


def test_client_auth_with_htpasswd(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("# users\nalice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode() + "\n")
    proxy = platproxy(seeded.registry.url, "linux/arm64", config_args(tmp_path, f'[auth]\nhtpasswd = "{htpasswd}"\n'))
    status, headers, body = request(proxy.port, "GET", "/v2/")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="platproxy"'
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
    assert request(proxy.port, "GET", "/healthz")[0] == 200
    image = f"{proxy.address}/library/multi:1"
    good = skopeo_copy(image, tmp_path / "good", "--src-creds", "alice:wonderland")
    assert good.returncode == 0, good.stderr
    assert skopeo_copy(image, tmp_path / "none").returncode != 0
    bad = skopeo_copy(image, tmp_path / "bad", "--src-creds", "alice:guess")
    assert bad.returncode != 0 and ("401" in bad.stderr or "unauthorized" in bad.stderr.lower())
    assert "wonderland" not in proxy.log()
    lines = [json.loads(x) for x in proxy.log().splitlines() if '"event": "request"' in x]
    assert {x.get("user") for x in lines if x["status"] == 200 and "/manifests/" in x["path"]} == {"alice"}
    assert {x.get("user") for x in lines if x["status"] == 401} == {None}  # who was refused is not named
    htpasswd.write_text("alice:plaintext\n")
    done = cli(
        "serve",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--config",
        config_args(tmp_path, f'[auth]\nhtpasswd = "{htpasswd}"\n')[1],
    )
    assert done.returncode == 2 and "only bcrypt hashes" in done.stderr
