"""The fleet view from real pulls: what each platform got for each image, recorded by two
replicas on one Ceph bucket and merged into one report, a what-if that matches a real pull, and
the page in a real headless chromium.

Real parts: Distribution as Docker Hub, platproxy replicas on one RGW bucket, and the clients: a
Docker Engine 20.10 (placed by its User-Agent), containerd 1.6 declaring linux/amd64/v3 in its
node header, podman with ``--platform`` and platform selectors.  The central replica counts
every loopback client as a remote node; the other resolves for its host with ``emulation =
"fallback"`` (an arm64-only image is then emulated there).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clients import containerd, ctr, engine_root, podman, start_engine, stop_engine, storage
from tests.conftest import Seeded
from tests.indexes import fresh_case
from tests.registry import Platproxy, cli, config_args, free_port, push_case, request
from tests.rgw import Rgw, bucket, s3_text

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "engine_root", "storage"]  # fixtures
Start = Callable[..., Platproxy]
DATA = Path(__file__).parents[1] / "data" / "binfmt"
REMOTE = '[resolve]\nhost_addresses = ["127.0.0.9/32"]\n'


def plat(spec: str) -> dict[str, str]:
    return dict(zip(("os", "architecture", "variant"), spec.split("/"), strict=False))


def report(config: list[str], *args: str) -> dict[str, Any]:
    done = cli("report", "--json", *config, *args)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def cells(found: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["image"], p): c for i in found["images"] for p, c in i["cells"].items()}


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("chromium")
    assert tool, "chromium must be installed (scripts/test.sh installs Debian's)"
    quiet = [
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-domain-reliability",
    ]  # the browser's own traffic, not the page's
    return subprocess.run([tool, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           *quiet, *args, url], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_the_fleet_seen_through_two_replicas_is_one_report_with_every_outcome_and_a_page(
    seeded: Seeded, platproxy: Start, rgw: Rgw, containerd: Path, storage: Path, engine_root: Path, tmp_path: Path
) -> None:
    registry = seeded.registry
    armsix = fresh_case([plat("linux/amd64"), plat("linux/arm/v6"), plat("linux/arm64/v8")], layer_mib=1)
    zonly = fresh_case([plat("linux/s390x")], layer_mib=1)
    armonly = fresh_case([plat("linux/arm64/v8")], layer_mib=1)
    for ref, case in (("library/armsix:1", armsix), ("library/zonly:1", zonly), ("library/armonly:1", armonly)):
        push_case(registry, ref, case)
    handlers = tmp_path / "binfmt"
    handlers.mkdir()
    shutil.copy(DATA / "kernel" / "qemu-aarch64", handlers / "qemu-aarch64")
    (handlers / "status").write_text("enabled\n")
    upstream = f'[[upstream]]\nname = "docker.io"\nurl = "{registry.url}"\n'
    store = s3_text(rgw, bucket(rgw), 'pull_times_every = "1s"')
    central = platproxy("", "linux/amd64", config_args(tmp_path, upstream + store + REMOTE))
    sidecar = platproxy("", "linux/amd64", config_args(
        tmp_path, upstream + store + f'[platform]\nemulation = "fallback"\nbinfmt_dir = "{handlers}"\n'))  # fmt: skip
    multi = seeded.cases["library/multi:1"]

    # Docker 20.10 through the central mirror, placed by its User-Agent (arch/amd64, default variant)
    engine = start_engine(engine_root, f"http://{central.address}")
    try:
        pulled = engine.docker("pull", "multi:1")
        assert pulled.returncode == 0, pulled.stderr
    finally:
        stop_engine(engine)
    # containerd declaring amd64/v3 in its node header: multi:1 only has a baseline amd64
    hosts = tmp_path / "hosts" / "docker.io"
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(f'[host."http://{central.address}"]\n  capabilities = ["pull", "resolve"]\n'
                                      f'  [host."http://{central.address}".header]\n'
                                      '    X-Platproxy-Platform = ["linux/amd64/v3"]\n')  # fmt: skip
    done = ctr(containerd, "images", "pull", "--hosts-dir", str(hosts.parent), "--snapshotter", "native",
               "docker.io/library/multi:1")  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout

    # podman with --platform and a selector: arm/v7 gets armsix's v6 (variant fallback), nothing of zonly
    def pod(proxy: Platproxy, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return podman(storage, "pull", "--tls-verify=false", *args, f"{proxy.address}/{name}")

    arm7 = ("--platform", "linux/arm/v7")
    assert pod(central, "platform.linux.arm.v7/library/armsix:1", *arm7).returncode == 0
    assert pod(central, "platform.linux.arm.v7/library/zonly:1", *arm7).returncode != 0
    # the same image and platform through both replicas: one row, counted twice
    assert pod(central, "platform.linux.arm.v7/library/multi:1", *arm7).returncode == 0
    assert pod(sidecar, "platform.linux.arm.v7/library/multi:1", *arm7).returncode == 0
    # the sidecar's own host (emulation = "fallback"): an arm64-only image is emulated
    assert pod(sidecar, "library/armonly:1").returncode == 0

    config = config_args(tmp_path, upstream + store)
    wanted = {
        ("docker.io/library/multi:1", "linux/amd64/v1"): ("native", "user-agent", 1),
        ("docker.io/library/multi:1", "linux/amd64/v3"): ("lower level", "node", 1),
        ("docker.io/library/armsix:1", "linux/arm/v7"): ("variant fallback", "selector", 1),
        ("docker.io/library/zonly:1", "linux/arm/v7"): ("missing", "selector", 1),
        ("docker.io/library/multi:1", "linux/arm/v7"): ("native", "selector", 2),
        ("docker.io/library/armonly:1", "linux/amd64/v1"): ("emulated", "host", 1),
    }
    deadline = time.monotonic() + 30
    while True:  # each replica shares its records within a few seconds
        seen = {k: (c["outcome"], c.get("source"), c.get("count")) for k, c in cells(report(config)).items()}
        if seen == wanted or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert seen == wanted
    found = cells(report(config))
    assert found[("docker.io/library/armsix:1", "linux/arm/v7")]["detail"] == "v7 node got v6"
    assert found[("docker.io/library/multi:1", "linux/amd64/v3")]["detail"] == "v3 host got v1"
    assert "no manifest in library/zonly:1 runs" in found[("docker.io/library/zonly:1", "linux/arm/v7")]["reason"]

    # what if an arm64 node pulled all of it: what a real arm64 pull through the mirror then gets
    what_if = cells(report(config, "--target", "linux/arm64/v8"))
    for image, case in (("multi:1", multi), ("armsix:1", armsix)):
        cell = what_if[(f"docker.io/library/{image}", "linux/arm64/v8 (what if)")]
        got = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                              f"docker://{central.address}/platform.linux.arm64.v8/library/{image}"],
                             capture_output=True, check=True)  # fmt: skip
        assert (cell["outcome"], cell["chosen"]) == ("native", "sha256:" + hashlib.sha256(got.stdout).hexdigest())
        assert cell["chosen"] == case.digest_of("linux/arm64/v8")
    assert what_if[("docker.io/library/zonly:1", "linux/arm64/v8 (what if)")]["outcome"] == "missing"
    gate = cli("report", *config, "--fail-on", "missing")
    assert gate.returncode == 1 and "docker.io/library/zonly:1 is missing on linux/arm/v7" in gate.stderr
    table = cli("report", *config, "--target", "linux/arm64/v8")
    assert "variant fallback (v7 node got v6)" in table.stdout and "linux/arm64/v8 (what if)" in table.stdout

    # the page, in a real browser: the matrix with the right cell states, a filter, nothing fetched elsewhere
    url = f"http://{central.address}/fleet"
    net_log = tmp_path / "net.json"
    dom = chromium(url, "--dump-dom", f"--log-net-log={net_log}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout, dom.stdout[-3000:]
    for (image, platform), (outcome, _, _) in wanted.items():
        assert f'data-image="{image}" data-platform="{platform}" data-outcome="{outcome}"' in dom.stdout, (
            image,
            platform,
        )
    origin = f"http://{central.address}"
    asked = _page_requests(net_log, origin)  # what the page asked for (the browser's own updates aside)
    assert f"{origin}/fleet.json" in asked and all(u.startswith(origin + "/") for u in asked), asked
    missing_only = chromium(url + "?outcome=missing", "--dump-dom")
    assert 'data-rows="1"' in missing_only.stdout and "docker.io/library/zonly:1" in missing_only.stdout
    assert "docker.io/library/armsix:1" not in missing_only.stdout.split("<tbody>")[1]
    shot = tmp_path / "fleet.png"
    phone = chromium(url + "?target=linux/arm64/v8", f"--screenshot={shot}", "--window-size=390,844")
    assert phone.returncode == 0 and shot.stat().st_size > 10_000, phone.stderr[-2000:]


def _page_requests(path: Path, origin: str) -> set[str]:
    """The URLs of every request the page at ``origin`` started (chromium's ``--log-net-log``:
    a request's initiator is the origin of the page that made it)."""
    text = path.read_text()
    try:
        log = json.loads(text)
    except ValueError:  # written as the browser exits: the last event may be cut
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return {str(e["params"]["url"]) for e in log["events"]
            if e["type"] == start and e.get("params", {}).get("initiator") == origin}  # fmt: skip


def test_the_page_is_served_only_where_the_config_says(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    ops = f"127.0.0.1:{free_port()}"
    proxy = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, f'[metrics]\nlisten = "{ops}"\n'))
    assert request(proxy.port, "GET", "/fleet")[0] == 404  # the client port serves the registry only
    port = int(ops.rpartition(":")[2])
    status, headers, body = request(port, "GET", "/fleet")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<table" in body
    assert "default-src 'none'" in headers["content-security-policy"]
    assert not [u for u in ("http://", "https://", "//cdn") if u.encode() in body]  # nothing from elsewhere
    status, _, data = request(port, "GET", "/fleet.json?target=linux/amd65")
    assert status == 400 and b"amd65" in data
    empty = json.loads(request(port, "GET", "/fleet.json")[2])
    assert empty["images"] == [] and empty["host"]["platform"] == "linux/amd64/v1"


def test_report_reads_without_writing_and_says_what_is_wrong_in_one_line(
    seeded: Seeded, platproxy: Start, tmp_path: Path
) -> None:
    import sqlite3

    def report_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return cli("report", *args)

    nothing = report_cli("--cache-dir", str(tmp_path / "none"))
    assert nothing.returncode == 2 and "no platproxy cache at" in nothing.stderr
    upstream = config_args(tmp_path, f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n')
    idle = platproxy("", "linux/amd64", upstream)
    idle.stop()
    empty = report_cli("--cache-dir", str(idle.cache_dir))
    assert empty.returncode == 0 and empty.stdout.startswith("no pulls recorded yet"), empty.stdout + empty.stderr
    proxy = platproxy("", "linux/amd64", upstream)
    status, _, _ = request(proxy.port, "GET", "/v2/platform.linux.arm.v7/library/multi/manifests/1",
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})  # fmt: skip
    assert status == 200
    proxy.stop()  # writes what it counted
    where = ("--cache-dir", str(proxy.cache_dir))
    shown = report_cli(*where)
    assert shown.returncode == 0 and "docker.io/library/multi:1" in shown.stdout and "native" in shown.stdout
    bad = report_cli(*where, "--target", "linux/amd65")
    assert bad.returncode == 2 and "amd65" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # what-if from the upstream (--refresh), with the cache's content gone: the cache alone cannot say
    for stored in (proxy.cache_dir / "blobs").rglob("*"):
        if stored.is_file():
            stored.unlink()
    arm64 = "linux/arm64/v8 (what if)"
    cached = json.loads(report_cli(*where, "--json", "--target", "linux/arm64/v8").stdout)
    assert cached["images"][0]["cells"][arm64]["outcome"] == "unknown"
    fresh = json.loads(report_cli(*upstream, *where, "--json", "--target", "linux/arm64/v8", "--refresh").stdout)
    cell = fresh["images"][0]["cells"][arm64]
    assert (cell["outcome"], cell["chosen"]) == ("native", seeded.cases["library/multi:1"].digest_of("linux/arm64/v8"))
    # records from a newer platproxy: refused by name, and left exactly as they were
    index = proxy.cache_dir / "index.db"
    with sqlite3.connect(index) as db:
        db.execute("UPDATE fleet_meta SET version = 2")

    def contents() -> list[str]:
        with sqlite3.connect(index) as db:
            return list(db.iterdump())

    before = contents()
    newer = report_cli(*where)
    assert newer.returncode == 2 and "newer platproxy" in newer.stderr, newer.stderr
    assert contents() == before
