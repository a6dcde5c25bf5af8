"""Validation of descriptor platforms against known-good values, as the seed talk proposes.

These are warnings, never rejections: an entry labelled ``arm64/v7`` still gets judged after
normalization, but the image's author (and the operator reading the decision) are told that
the label is not a real platform.  The known values are Go's ``go tool dist list`` (every OCI
tool follows GOOS/GOARCH) and the variants the image spec defines.
"""

from __future__ import annotations

import re

from hostinfo.normalize import normalize_arch, normalize_os
from hostinfo.platform import KNOWN_ARCHES, Platform

KNOWN_OS = frozenset(
    {
        "aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux",
        "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
    }
)  # fmt: skip

#: Which variants are real for each architecture (after normalization).
_VARIANTS: dict[str, re.Pattern[str]] = {
    "amd64": re.compile(r"^v[1-4]$"),
    "arm": re.compile(r"^v[5-8]$"),
    "arm64": re.compile(r"^v8(\.[1-9])?$|^v9(\.[1-5])?$"),
    "ppc64le": re.compile(r"^$|^power(8|9|10|11)$"),
    "ppc64": re.compile(r"^$|^power([5-9]|10|11)$"),
}
_ARM_STYLE = re.compile(r"^armv?\d")


def platform_warnings(raw: Platform) -> list[str]:
    """Sentences about what is not a known-good value in a descriptor's platform."""
    out: list[str] = []
    os_name = normalize_os(raw.os)
    if os_name not in KNOWN_OS and os_name != "unknown":
        out.append(f"unknown os {raw.os!r}")
    arch, variant = normalize_arch(raw.architecture, raw.variant)
    if arch not in KNOWN_ARCHES:
        if arch != "unknown":
            out.append(f"unknown architecture {raw.architecture!r}")
        return out
    if raw.architecture != arch and raw.architecture.lower() != arch:
        out.append(f"architecture {raw.architecture!r} is an alias; OCI names it {arch!r}")
    elif raw.architecture != raw.architecture.lower():
        out.append(f"architecture {raw.architecture!r} should be lower-case")
    if raw.variant and _ARM_STYLE.match(raw.variant.lower()):
        out.append(f"variant {raw.variant!r} is written in the armvN style; read as {variant!r}")
    pattern = _VARIANTS.get(arch)
    if pattern is not None and not pattern.match(variant):
        out.append(f"{arch}/{raw.variant} is not a real platform: {arch} has no variant {raw.variant!r}")
    elif pattern is None and variant:
        out.append(f"{arch} defines no variants, but this entry says {raw.variant!r}")
    return out
