"""Property tests: normalization is idempotent, parse(format(p)) == p, vectors start at home."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from hostinfo import HostProfile, Platform, normalize, preference_vector
from hostinfo.compat import Capabilities

ARCH_WORDS = [
    "x86_64", "amd64", "x64", "i386", "i686", "386", "aarch64", "arm64", "armhf", "armel", "arm",
    "armv5tel", "armv6l", "armv7l", "armv8l", "ppc64le", "s390x", "riscv64", "loongarch64",
    "mips64le", "AArch64", "X86_64",
]  # fmt: skip
VARIANTS = ["", "v1", "v2", "v3", "v4", "5", "6", "7", "8", "v5", "v6", "v7", "v8", "armv7", "v8.0", "v8.2",
            "9", "v9.0", "v9.1", "power9"]  # fmt: skip
word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12)


platforms = st.builds(
    Platform,
    os=st.sampled_from(["linux", "Linux", "windows", "macos", "freebsd"]) | word,
    architecture=st.sampled_from(ARCH_WORDS) | word,
    variant=st.sampled_from(VARIANTS) | word,
    os_version=st.sampled_from(["", "10.0.17763.5820", "10.0.20348"]) | word,
    os_features=st.lists(st.sampled_from(["win32k", "gpu", "a+b", "x(y)", "p/q", "%"]), max_size=3).map(tuple),
    features=st.lists(st.sampled_from(["avx2", "SSE3", "neon", " abm "]), max_size=3).map(tuple),
)


@given(platforms)
def test_normalize_is_idempotent(p: Platform) -> None:
    assert normalize(normalize(p)) == normalize(p)


@given(platforms)
def test_parse_of_format_is_identity(p: Platform) -> None:
    """CPU features are not part of the specifier syntax, so they are compared apart."""
    n = dataclasses.replace(normalize(p), features=())
    assert Platform.parse(str(n)) == n


HOSTS = [
    "linux/amd64/v1", "linux/amd64/v2", "linux/amd64/v3", "linux/amd64/v4", "linux/arm64/v8",
    "linux/arm64/v8.2", "linux/arm64/v9.2", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7",
    "linux/arm/v8", "linux/386", "linux/ppc64le", "linux/s390x", "linux/riscv64", "linux/loong64",
    "linux/mips64le", "windows(10.0.20348)/amd64",
]  # fmt: skip


@given(st.sampled_from(HOSTS), st.booleans(), st.booleans(), st.booleans())
def test_vector_starts_with_the_host(spec: str, ia32: bool, aarch32: bool, arm64: bool) -> None:
    p = Platform.parse(spec)
    h = HostProfile(platform=p, capabilities=Capabilities(ia32=ia32, aarch32=aarch32, arm64=arm64))
    first = preference_vector(h)[0]
    assert (first.os, first.architecture, first.variant, first.label) == (
        p.os, p.architecture, p.variant, "native",
    )  # fmt: skip
