"""The hostinfo CLI: output shape, bad input, and agreement with the live system."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent.parent / "data" / "hostinfo"


def run(*args: str, cmd: tuple[str, ...] = (sys.executable, "-m", "hostinfo")) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)


def test_json_shape_from_files() -> None:
    case = CORPUS / "arm-v6-raspberrypi-zero"
    done = run("--cpuinfo", str(case / "cpuinfo"), "--machine", "armv6l")
    report = json.loads(done.stdout)
    for key in ("os", "architecture", "variant", "features", "os_version", "sources", "runs"):
        assert key in report
    assert report["runs"] == [
        {"platform": "linux/arm/v6", "label": "native"},
        {"platform": "linux/arm/v5", "label": "lower level"},
    ]
    assert "ARMv6-compatible" in report["sources"]["variant"]


def test_auto_means_no_when_detecting_from_files() -> None:
    case = CORPUS / "arm64-v8-graviton2-neoverse-n1"
    report = json.loads(run("--cpuinfo", str(case / "cpuinfo"), "--machine", "aarch64").stdout)
    assert report["capabilities"]["aarch32"] is False
    assert "given files" in report["sources"]["aarch32"]
    report = json.loads(run("--cpuinfo", str(case / "cpuinfo"), "--machine", "aarch64", "--aarch32", "yes").stdout)
    assert [r["platform"] for r in report["runs"]][1] == "linux/arm/v8"


def test_text_format() -> None:
    case = CORPUS / "amd64-v3-haswell-xeon-e5-2680v3"
    done = run("--cpuinfo", str(case / "cpuinfo"), "--machine", "x86_64", "--format", "text")
    lines = done.stdout.splitlines()
    assert lines[0] == "linux/amd64/v3"
    assert lines[1:] == ["linux/amd64/v3\tnative", "linux/amd64/v2\tlower level", "linux/amd64/v1\tbaseline"]


def test_platproxy_hostinfo_is_the_same_command() -> None:
    case = CORPUS / "s390x-z196-lpar"
    a = run("--cpuinfo", str(case / "cpuinfo"), "--machine", "s390x")
    b = run("hostinfo", "--cpuinfo", str(case / "cpuinfo"), "--machine", "s390x",
            cmd=(sys.executable, "-m", "proxy.cli"))  # fmt: skip
    assert a.returncode == b.returncode == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)


@pytest.mark.parametrize(
    ("content", "machine", "needle"),
    [
        (None, "x86_64", "cannot read"),
        (b"", "x86_64", "empty"),
        (b"\x7fELF\x00\x01\x02\xff\xfe", "x86_64", "not text"),
        (b"\x00\x00\x00", "x86_64", "NUL"),
        (b"just words, no colon\n", "x86_64", "no 'key : value'"),
        (b"flags : fpu\n", "pdp11", "unknown machine"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, content: bytes | None, machine: str, needle: str) -> None:
    path = tmp_path / "cpuinfo"
    if content is not None:
        path.write_bytes(content)
    done = run("--cpuinfo", str(path), "--machine", machine)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_cpuinfo_without_machine_is_an_error() -> None:
    done = run("--cpuinfo", str(CORPUS / "386-pentium-m" / "cpuinfo"))
    assert done.returncode == 2 and "go together" in done.stderr


def _glibc_level() -> str | None:
    loaders = sorted(Path("/lib64").glob("ld-linux-x86-64.so.*")) if Path("/lib64").exists() else []
    if not loaders:
        return None
    out = subprocess.run([str(loaders[0]), "--help"], capture_output=True, text=True, check=False).stdout
    levels = re.findall(r"x86-64-(v\d) \(supported", out)
    return max(levels) if levels else ("v1" if "x86-64" in out else None)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the amd64 level exists only on x86_64 hosts")
def test_live_amd64_level_matches_glibc() -> None:
    expected = _glibc_level()
    if expected is None:
        pytest.skip("this glibc's ld.so --help prints no x86-64 levels")
    report = json.loads(run().stdout)
    assert report["architecture"] == "amd64"
    assert report["variant"] == expected


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the IA32 probe runs on x86_64 hosts")
def test_live_ia32_probe_runs_a_real_binary() -> None:
    report = json.loads(run().stdout)
    assert report["sources"]["ia32"].startswith("probe:")
    ran = "exited 0" in report["sources"]["ia32"]
    assert report["capabilities"]["ia32"] is ran
    assert (report["runs"][-1]["platform"] == "linux/386") is ran
    forced = json.loads(run("--ia32", "no").stdout)
    assert forced["capabilities"]["ia32"] is False and forced["runs"][-1]["platform"] != "linux/386"


def test_arm_probe_is_refused_on_other_architectures() -> None:
    """A 32-bit ARM ELF cannot run natively on an x86 kernel: the probe must say no."""
    from hostinfo.probe import _ARM_EXIT0, run_elf, tiny_elf32

    if platform.machine() not in ("x86_64", "i686"):
        pytest.skip("meaningful only where arm code cannot run")
    ran, what = run_elf(tiny_elf32(40, _ARM_EXIT0, 0x10000, flags=0x05000000))
    assert ran is False and "ENOEXEC" in what
