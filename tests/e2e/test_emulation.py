"""Emulated platforms end to end: a handler registered with the running kernel shows in
``platproxy hostinfo``; with ``emulation = "fallback"`` an index without a native entry resolves
to the emulated one (labelled so), never ahead of a native entry; with it off the 404 names the
handler that could run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_MANIFEST
from tests.indexes import Case
from tests.ocibuild import image, index
from tests.registry import Platproxy, Registry, cli, config_args, push_case, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
BINFMT = Path("/proc/sys/fs/binfmt_misc")
DATA = Path(__file__).parents[1] / "data" / "binfmt"
AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


@pytest.fixture
def aarch64_handler() -> Iterator[str]:
    """An aarch64 handler registered with the kernel (binfmt_misc mounted if it is not), removed
    after the test whatever happens; its interpreter is /bin/true (only detection is tested)."""
    mounted = (BINFMT / "register").exists()
    if not mounted:
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    name = f"platproxy-test-{os.getpid()}"
    (BINFMT / "register").write_text(f":{name}:M:0:{AARCH64_MAGIC}:{AARCH64_MASK}:/bin/true:F")
    try:
        yield name
    finally:
        if (BINFMT / name).exists():
            (BINFMT / name).write_text("-1")
        if not mounted:
            subprocess.run(["umount", str(BINFMT)], check=False)
    assert not (BINFMT / name).exists()


def test_hostinfo_reports_a_registered_handler(aarch64_handler: str) -> None:
    report = json.loads(cli("hostinfo").stdout)
    [entry] = [e for e in report["emulated"] if e["handler"] == aarch64_handler]
    assert entry["platform"] == "linux/arm64/v8" and entry["usable"] is True
    assert report["capabilities"]["emulation"] is False  # detected, not used: off by default
    shown = cli("hostinfo", "--format", "text", "--emulation", "fallback")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    if report["architecture"] != "arm64":
        assert "linux/arm64/v8\temulated" in text


def case(*platforms: str) -> Case:
    named = {p: image(dict(zip(("os", "architecture", "variant"), p.split("/"), strict=False))) for p in platforms}
    return Case(index(list(named.values())), [b for i in named.values() for b in (i.manifest, *i.blobs())], named)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    upstream = Registry(tmp_path / "registry").start()
    yield upstream
    upstream.stop()


def test_fallback_ranks_emulated_entries_after_every_native_one(
    registry: Registry, platproxy: Start, tmp_path: Path
) -> None:
    handlers = tmp_path / "binfmt"
    handlers.mkdir()
    shutil.copy(DATA / "kernel" / "qemu-aarch64", handlers / "qemu-aarch64")
    (handlers / "status").write_text("enabled\n")
    foreign, mixed = case("linux/arm64/v8", "linux/s390x"), case("linux/arm64/v8", "linux/s390x", "linux/amd64")
    push_case(registry, "library/foreign:1", foreign)
    push_case(registry, "library/mixed:1", mixed)

    def ask(proxy: Platproxy, name: str) -> tuple[int, dict[str, str], bytes]:
        return request(proxy.port, "GET", f"/v2/library/{name}/manifests/1", headers={"Accept": OCI_MANIFEST})

    on = platproxy(registry.url, "linux/amd64", config_args(
        tmp_path, f'[platform]\nemulation = "fallback"\nbinfmt_dir = "{handlers}"\n'))  # fmt: skip
    status, headers, _ = ask(on, "foreign")
    assert status == 200 and headers["docker-content-digest"] == foreign.digest_of("linux/arm64/v8")
    assert headers["x-platproxy-rank"] == "emulated"
    status, headers, _ = ask(on, "mixed")
    assert status == 200 and headers["docker-content-digest"] == mixed.digest_of("linux/amd64")
    assert headers["x-platproxy-rank"] != "emulated"
    metrics = request(on.port, "GET", "/metrics")[2].decode()
    assert "platproxy_emulated_resolutions_total 1.0" in metrics
    assert on.wait_for_log('"label": "emulated"')

    off = platproxy(registry.url, "linux/amd64", config_args(tmp_path, f'[platform]\nbinfmt_dir = "{handlers}"\n'))
    status, _, body = ask(off, "foreign")
    assert status == 404 and b'emulation = \\"fallback\\"' in body and b"qemu-aarch64" in body
    done = cli("resolve", f"{registry.address}/library/foreign:1", "--platform", "linux/amd64", "--emulation",
               "fallback", "--binfmt-dir", str(handlers), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    chosen = json.loads(done.stdout)["chosen"]
    assert (chosen["digest"], chosen["label"]) == (foreign.digest_of("linux/arm64/v8"), "emulated")
    listed = cli("platforms", f"{registry.address}/library/foreign:1", "--emulation", "fallback", "--binfmt-dir",
                 str(handlers), "--json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout
    if json.loads(cli("hostinfo").stdout)["architecture"] == "amd64":
        assert [r["digest"] for r in json.loads(rows) if r.get("chosen")] == [foreign.digest_of("linux/arm64/v8")]
