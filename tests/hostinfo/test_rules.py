"""The detection, normalization and compatibility rules, one table each."""

from __future__ import annotations

import pytest

from hostinfo import HostProfile, Platform, PlatformError, compare, detect, preference_vector
from hostinfo.compat import Capabilities, Rank, Rejection
from hostinfo.detect import HostDetails, HostInfoError
from hostinfo.normalize import normalize_arch
from hostinfo.validate import require_real


@pytest.mark.parametrize(
    ("arch", "variant", "expected"),
    [
        ("x86_64", "", ("amd64", "v1")),
        ("x86-64", "v3", ("amd64", "v3")),
        ("AMD64", "V2", ("amd64", "v2")),
        ("x64", "", ("amd64", "v1")),
        ("i386", "", ("386", "")),
        ("i686", "", ("386", "")),
        ("x86", "", ("386", "")),
        ("aarch64", "", ("arm64", "v8")),
        ("arm64", "8", ("arm64", "v8")),
        ("arm64", "v8.0", ("arm64", "v8")),
        ("arm64", "armv8", ("arm64", "v8")),
        ("arm64", "9", ("arm64", "v9")),
        ("arm64", "v9.0", ("arm64", "v9")),
        ("arm64", "v8.2", ("arm64", "v8.2")),
        ("armhf", "", ("arm", "v7")),
        ("armel", "", ("arm", "v6")),
        ("arm", "", ("arm", "v7")),
        ("arm", "7", ("arm", "v7")),
        ("arm", "armv7", ("arm", "v7")),
        ("arm", "armv8", ("arm", "v8")),
        ("arm", "5", ("arm", "v5")),
        ("armv5tel", "", ("arm", "v5")),
        ("armv6l", "", ("arm", "v6")),
        ("armv7l", "", ("arm", "v7")),
        ("armv8l", "", ("arm", "v8")),
        ("aarch64_be", "", ("arm64be", "")),
        ("loongarch64", "", ("loong64", "")),
        ("ppc64le", "", ("ppc64le", "")),
        ("s390x", "", ("s390x", "")),
        ("riscv64", "", ("riscv64", "")),
    ],
)
def test_normalize_aliases(arch: str, variant: str, expected: tuple[str, str]) -> None:
    assert normalize_arch(arch, variant) == expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/x86_64", "linux/amd64/v1"),
        ("Linux/AMD64/v3", "linux/amd64/v3"),
        ("macos/arm64", "darwin/arm64/v8"),
        ("arm64", "linux/arm64/v8"),
        ("windows(10.0.17763.5820)/amd64", "windows(10.0.17763.5820)/amd64/v1"),
        ("linux(+gpu+abc)/arm64", "linux(+abc+gpu)/arm64/v8"),
        ("windows(10.0.20348+win32k)/amd64", "windows(10.0.20348+win32k)/amd64/v1"),
    ],
)
def test_parse_and_format(text: str, canonical: str) -> None:
    p = Platform.parse(text)
    assert str(p) == canonical
    assert Platform.parse(str(p)) == p


def test_parse_keeps_os_options() -> None:
    p = Platform.parse("windows(10.0.17763.5820+win32k)/amd64")
    assert (p.os, p.os_version, p.os_features) == ("windows", "10.0.17763.5820", ("win32k",))


@pytest.mark.parametrize("bad", ["", "/", "linux/", "a/b/c/d", "linux/arm/v7 x", "nosuch", "linux(/amd64"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(PlatformError):
        Platform.parse(bad)


def host(spec: str, *, aarch32: bool = False, ia32: bool = False, level: str = "") -> HostProfile:
    return HostProfile(
        platform=Platform.parse(spec),
        details=HostDetails(level=level),
        capabilities=Capabilities(aarch32=aarch32, ia32=ia32),
    )


def vector(h: HostProfile) -> list[str]:
    return [str(s) for s in preference_vector(h)]


# Section 3 of the matching note, column "Ours".
def test_vector_amd64_v4() -> None:
    assert vector(host("linux/amd64/v4")) == [
        "linux/amd64/v4", "linux/amd64/v3", "linux/amd64/v2", "linux/amd64/v1",
    ]  # fmt: skip
    assert vector(host("linux/amd64/v4", ia32=True))[-1] == "linux/386"


def test_vector_arm64_gated_by_aarch32() -> None:
    assert vector(host("linux/arm64")) == ["linux/arm64/v8"]
    assert vector(host("linux/arm64", aarch32=True)) == [
        "linux/arm64/v8", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5",
    ]  # fmt: skip


def test_vector_arm64_finer_levels() -> None:
    assert vector(host("linux/arm64/v8.2")) == ["linux/arm64/v8.2", "linux/arm64/v8.1", "linux/arm64/v8"]
    v92 = vector(host("linux/arm64/v9.2"))
    assert v92[:3] == ["linux/arm64/v9.2", "linux/arm64/v9.1", "linux/arm64/v9"]
    assert v92[3] == "linux/arm64/v8.7" and v92[-1] == "linux/arm64/v8"


def test_vector_arm() -> None:
    assert vector(host("linux/arm/v8")) == ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
    assert vector(host("linux/arm/v7")) == ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
    assert vector(host("linux/arm/v6")) == ["linux/arm/v6", "linux/arm/v5"]
    opt_in = HostProfile(platform=Platform.parse("linux/arm/v8"), capabilities=Capabilities(arm64=True))
    assert vector(opt_in)[-1] == "linux/arm64/v8"


def test_vector_other_arches() -> None:
    assert vector(host("linux/386")) == ["linux/386"]
    assert vector(host("linux/ppc64le", level="power9")) == [
        "linux/ppc64le/power9", "linux/ppc64le/power8", "linux/ppc64le",
    ]  # fmt: skip
    assert vector(host("linux/ppc64le", level="power7")) == ["linux/ppc64le"]
    assert vector(host("linux/s390x")) == ["linux/s390x"]


def test_vector_labels() -> None:
    labels = [s.label for s in preference_vector(host("linux/amd64/v3", ia32=True))]
    assert labels == ["native", "lower level", "baseline", "32-bit compat (IA32)"]


def test_compare_ranks_and_rejects_with_sentences() -> None:
    h = host("linux/amd64/v3")
    assert compare(h, Platform(os="linux", architecture="amd64")) == Rank(index=2, label="baseline")
    assert compare(h, Platform(os="linux", architecture="x86_64", variant="v3")) == Rank(index=0, label="native")
    too_high = compare(h, Platform(os="linux", architecture="amd64", variant="v4"))
    assert isinstance(too_high, Rejection) and "v4" in too_high.reason
    no_ia32 = compare(h, Platform(os="linux", architecture="386"))
    assert isinstance(no_ia32, Rejection) and "IA32" in no_ia32.reason
    unknown = compare(h, Platform(os="unknown", architecture="unknown"))
    assert isinstance(unknown, Rejection) and "attestation" in unknown.reason
    windows = compare(h, Platform(os="windows", architecture="amd64"))
    assert isinstance(windows, Rejection) and "windows" in windows.reason
    arm = compare(host("linux/arm64"), Platform(os="linux", architecture="arm", variant="v7"))
    assert isinstance(arm, Rejection) and "AArch32" in arm.reason


def test_compare_features_are_a_subset_of_the_host() -> None:
    h = HostProfile(platform=Platform.parse("linux/amd64/v3", features=("avx2", "pni", "abm")))
    assert isinstance(compare(h, Platform(os="linux", architecture="amd64", features=("sse3", "LZCNT"))), Rank)
    lacking = compare(h, Platform(os="linux", architecture="amd64", features=("avx512f",)))
    assert isinstance(lacking, Rejection) and "avx512f" in lacking.reason
    os_feat = compare(h, Platform(os="linux", architecture="amd64", os_features=("gpu",)))
    assert isinstance(os_feat, Rejection) and "os.features" in os_feat.reason


@pytest.mark.parametrize(
    ("host_version", "image_version", "ok"),
    [
        ("10.0.17763.5820", "10.0.17763.1", True),
        ("10.0.17763.5820", "10.0.20348.1", False),
        ("10.0.20348.100", "10.0.17763.1", False),
        ("10.0.26100.1", "10.0.20348.2", True),
        ("10.0.26100.1", "10.0.26100.9", True),
        ("10.0.26100.1", "10.0.26200.1", False),
        ("10.0.20348.1", "", True),
        ("6.3.9600", "10.0.9600", False),
    ],
)
def test_windows_versions(host_version: str, image_version: str, ok: bool) -> None:
    h = HostProfile(platform=Platform(os="windows", architecture="amd64", variant="v1", os_version=host_version))
    verdict = compare(h, Platform(os="windows", architecture="amd64", os_version=image_version))
    assert isinstance(verdict, Rank) is ok, verdict


ARM_HEADER = "processor\t: 0\nmodel name\t: {name}\nFeatures\t: half thumb\nCPU architecture: {arch}\n"


@pytest.mark.parametrize(
    ("machine", "name", "arch", "variant"),
    [
        ("armv7l", "ARMv7 Processor rev 4 (v7l)", "7", "v7"),
        ("armv7l", "ARMv6-compatible processor rev 7 (v6l)", "7", "v6"),
        ("armv6l", "ARMv7 Processor", "7", "v6"),
        ("armv5tel", "Feroceon", "5TE", "v5"),
        ("armv8l", "ARMv8 Processor rev 4 (v8l)", "8", "v8"),
        ("armv7l", "ARMv7 Processor", "?(12)", "v7"),
    ],
)
def test_arm_variant_rules(machine: str, name: str, arch: str, variant: str) -> None:
    found = detect("Linux", machine, ARM_HEADER.format(name=name, arch=arch), "little")
    assert found.platform.variant == variant
    assert found.sources["variant"]


@pytest.mark.parametrize(("machine", "variant"), [("armv6l", "v6"), ("armv7l", "v7"), ("armv5tel", "v5")])
def test_arm_variant_from_uname_when_field_missing(machine: str, variant: str) -> None:
    found = detect("Linux", machine, "processor : 0\nBogoMIPS : 100\n", "little")
    assert found.platform.variant == variant
    assert found.sources["variant"].startswith("uname")


def test_old_kernel_processor_line_is_the_cpu_name() -> None:
    text = "Processor\t: ARMv6-compatible processor rev 7 (v6l)\nprocessor\t: 0\nCPU architecture: 7\n"
    found = detect("Linux", "armv7l", text, "little")
    assert found.platform.variant == "v6"
    assert "Processor" in found.sources["variant"]


def test_features_are_common_to_every_core() -> None:
    text = "processor: 0\nFeatures: fp asimd sve\n\nprocessor: 1\nFeatures: fp asimd\n"
    assert detect("Linux", "aarch64", text, "little").platform.features == ("asimd", "fp")


def test_mips_byte_order() -> None:
    assert detect("Linux", "mips", "cpu model : x\n", "little").platform.architecture == "mipsle"
    assert detect("Linux", "mips64", "cpu model : x\n", "big").platform.architecture == "mips64"


@pytest.mark.parametrize("machine", ["", "pdp11", "x86_65"])
def test_unknown_machine_is_an_error(machine: str) -> None:
    with pytest.raises(HostInfoError):
        detect("Linux", machine, "flags : fpu\n", "little")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("linux/amd65", "linux/amd64"),
        ("linux/amd64/v7", "linux/amd64"),
        ("linux/arm/v9", "linux/arm"),
        ("lnux/arm64", "linux/arm64"),
        ("linux/armv7", "linux/arm/v7"),
        ("linux/riscv64/rva23", "linux/riscv64"),
        ("linux/aarch65/v8", "linux/arm64/v8"),
    ],
)
def test_a_typed_platform_that_does_not_exist_is_refused_with_a_suggestion(typed: str, meant: str) -> None:
    with pytest.raises(PlatformError, match=rf"in '{typed}' \(did you mean '{meant}'\?\)"):
        require_real(typed)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [("linux/aarch64", "linux/arm64/v8"), ("linux/x86_64", "linux/amd64/v1"), ("linux/armhf", "linux/arm/v7"),
     ("windows(10.0.17763)/amd64", "windows(10.0.17763)/amd64/v1"), ("linux/ppc64le/power9", "linux/ppc64le/power9")],
)  # fmt: skip
def test_aliases_are_real_platforms(typed: str, canonical: str) -> None:
    assert str(require_real(typed)) == canonical
