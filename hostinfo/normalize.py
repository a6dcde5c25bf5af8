"""Normalization of OS, architecture and variant names.

One function serves both sides of every comparison: the host (from ``uname -m``) and each
descriptor of an index (from whatever a build tool wrote).  Comparing raw strings is how
anchors end up with "no matching manifest for arm64/v8" against an unlabeled arm64 entry, so
everything is normalized first and the raw value is kept only for logging.

Rules (containerd/platforms ``database.go`` and ``platforms.go``'s Normalize, with the variant
made explicit where containerd leaves it empty):
- a missing variant means arm -> ``v7``, arm64 -> ``v8``, amd64 -> ``v1``; the variant is then
  always explicit for those three architectures;
- ``armv7``-style variants lose their prefix; ``8``, ``v8.0`` and friends collapse to ``v8``;
- 386 and the other architectures without a variant scheme keep whatever variant they carry,
  except that ``i386``-style aliases drop theirs (as containerd does).
"""

from __future__ import annotations

import re

#: Operating system aliases.
_OS_ALIASES: dict[str, str] = {"macos": "darwin"}

#: ``uname -m`` and descriptor aliases that name an architecture *and* a variant.
#: A value of ``None`` for the variant means "keep the variant given beside it".
ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "x64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "x86": ("386", ""),
    "386": ("386", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "aarch64_be": ("arm64be", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "armv5l": ("arm", "v5"),
    "armv6l": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv8l": ("arm", "v8"),
    "arm": ("arm", None),
    "loongarch64": ("loong64", None),
    "loong64": ("loong64", None),
    "ppc64el": ("ppc64le", None),
}

#: Architectures that carry the OCI variant scheme, with their default (baseline) variant.
DEFAULT_VARIANT: dict[str, str] = {"amd64": "v1", "arm64": "v8", "arm": "v7"}

_ARM_VARIANT = re.compile(r"^(?:arm)?v?([5-8])l?$")
_ARM64_VARIANT = re.compile(r"^(?:arm)?v?([89])(?:\.(\d+))?$")
_AMD64_VARIANT = re.compile(r"^v?([1-4])$")


def normalize_os(os_name: str) -> str:
    """Lower-case the OS and apply the aliases (``macOS`` -> ``darwin``)."""
    lowered = os_name.strip().lower()
    return _OS_ALIASES.get(lowered, lowered)


def normalize_arch(architecture: str, variant: str = "") -> tuple[str, str]:
    """Return the canonical ``(architecture, variant)`` for a raw pair.

    Unknown architectures are lower-cased and returned with their variant lower-cased: they
    cannot be matched against anything but themselves, which is the honest outcome.
    """
    arch = architecture.strip().lower()
    var = variant.strip().lower()
    canonical, forced = ARCH_ALIASES.get(arch, (arch, None))
    if forced is not None and (forced == "" or var == ""):
        var = forced
    return canonical, _normalize_variant(canonical, var)


def _normalize_variant(arch: str, variant: str) -> str:
    if arch == "386":
        return ""
    if arch == "amd64":
        m = _AMD64_VARIANT.match(variant)
        return f"v{m.group(1)}" if m else (variant or DEFAULT_VARIANT[arch])
    if arch == "arm64":
        m = _ARM64_VARIANT.match(variant)
        if m is None:
            return variant or DEFAULT_VARIANT[arch]
        major, minor = m.group(1), m.group(2)
        if minor is None or minor == "0":
            return f"v{major}"
        return f"v{major}.{int(minor)}"
    if arch == "arm":
        m = _ARM_VARIANT.match(variant)
        return f"v{m.group(1)}" if m else (variant or DEFAULT_VARIANT[arch])
    return variant


def is_mips_family(machine: str) -> bool:
    """``uname -m`` does not tell a MIPS kernel's byte order; the caller must."""
    return machine.strip().lower() in {"mips", "mips64", "mipsel", "mips64el"}


def mips_arch(machine: str, byteorder: str) -> str:
    """Choose mips/mipsle/mips64/mips64le from ``uname -m`` and the byte order."""
    base = "mips64" if machine.strip().lower().startswith("mips64") else "mips"
    little = byteorder == "little" or machine.strip().lower().endswith("el")
    return f"{base}le" if little else base
