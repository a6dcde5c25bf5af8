"""Warnings about descriptor platforms that are not known-good values (``hostinfo.known``).

These are warnings, never rejections: an entry labelled ``arm64/v7`` still gets judged after
normalization, but the image's author (and the operator reading the decision) are told that
the label is not a real platform.
"""

from __future__ import annotations

import re

from hostinfo.known import KNOWN_ARCHES, KNOWN_OS, VARIANTS
from hostinfo.normalize import normalize_arch, normalize_os
from hostinfo.platform import Platform

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
    pattern = VARIANTS.get(arch)
    if pattern is not None and not pattern.match(variant):
        out.append(f"{arch}/{raw.variant} is not a real platform: {arch} has no variant {raw.variant!r}")
    elif pattern is None and variant:
        out.append(f"{arch} defines no variants, but this entry says {raw.variant!r}")
    return out
