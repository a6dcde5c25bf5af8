"""Warnings about descriptor platforms that are not known-good values (``hostinfo.known``).

For an index entry these are warnings, never rejections: an entry labelled ``arm64/v7`` still
gets judged after normalization, but the image's author (and the operator reading the decision)
are told that the label is not a real platform.  A platform an operator types (an override, a
``--platform``, a client rule) is held to more: ``require_real`` refuses it, with the nearest
real value, because a typo there silently changes what every pull gets.
"""

from __future__ import annotations

import difflib
import re

from hostinfo.known import KNOWN_ARCHES, KNOWN_OS, VARIANTS
from hostinfo.normalize import ARCH_ALIASES, normalize_arch, normalize_os
from hostinfo.platform import Platform, PlatformError, normalize, parse_raw

_ARM_STYLE = re.compile(r"^armv?\d")


def platform_warnings(raw: Platform) -> list[str]:
    """Sentences about what is not a known-good value in a descriptor's platform."""
    return [sentence for _, sentence in _findings(raw)]


def _findings(raw: Platform) -> list[tuple[bool, str]]:
    """Each finding with whether it makes the platform unreal (an unknown os or architecture, a
    variant the architecture lacks) rather than a matter of spelling (an alias, case, armvN)."""
    out: list[tuple[bool, str]] = []
    os_name = normalize_os(raw.os)
    if os_name not in KNOWN_OS and os_name != "unknown":
        out.append((True, f"unknown os {raw.os!r}"))
    arch, variant = normalize_arch(raw.architecture, raw.variant)
    if arch not in KNOWN_ARCHES:
        if arch != "unknown":
            out.append((True, f"unknown architecture {raw.architecture!r}"))
        return out
    if raw.architecture != arch and raw.architecture.lower() != arch:
        out.append((False, f"architecture {raw.architecture!r} is an alias; OCI names it {arch!r}"))
    elif raw.architecture != raw.architecture.lower():
        out.append((False, f"architecture {raw.architecture!r} should be lower-case"))
    if raw.variant and _ARM_STYLE.match(raw.variant.lower()):
        out.append((False, f"variant {raw.variant!r} is written in the armvN style; read as {variant!r}"))
    pattern = VARIANTS.get(arch)
    if pattern is not None and not pattern.match(variant):
        out.append((True, f"{arch}/{raw.variant} is not a real platform: {arch} has no variant {raw.variant!r}"))
    elif pattern is None and variant:
        out.append((True, f"{arch} defines no variants, but this entry says {raw.variant!r}"))
    return out


def require_real(specifier: str, features: tuple[str, ...] = ()) -> Platform:
    """``specifier`` parsed and normalized, or a ``PlatformError`` naming what is not real in it
    (an unknown os or architecture, a variant its architecture lacks) and what was probably meant."""
    raw = parse_raw(specifier, features)
    platform = normalize(raw)
    problems = [sentence for unreal, sentence in _findings(raw) if unreal]
    if not problems:
        return platform
    hint = _suggestion(raw)
    raise PlatformError(f"{'; '.join(problems)} in {specifier!r}{f' (did you mean {hint!r}?)' if hint else ''}")


def _suggestion(raw: Platform) -> str:
    """The nearest real platform to a mistyped one, by spelling, or ``""``."""
    os_name = _nearest(normalize_os(raw.os), KNOWN_OS)
    arch = _nearest(raw.architecture.lower(), KNOWN_ARCHES | set(ARCH_ALIASES))
    if not os_name or not arch:
        return ""
    named = bool(raw.variant or ARCH_ALIASES.get(arch, ("", None))[1])  # armv7l names v7 itself
    arch, variant = normalize_arch(arch, raw.variant)
    pattern = VARIANTS.get(arch)
    if not named or pattern is None or not pattern.match(variant):
        return f"{os_name}/{arch}"  # the variant is then the default (or this host's, if it is one)
    return f"{os_name}/{arch}/{variant}"


def _nearest(word: str, choices: frozenset[str] | set[str]) -> str:
    if word in choices:
        return word
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else ""
