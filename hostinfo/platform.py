"""The ``Platform`` model: parse, format and normalize.

The specifier syntax is containerd's, the ecosystem's convention:
``<os>[(<os.version>[+<os.feature>]...)]/<arch>[/<variant>]``, for example ``linux/arm/v7``,
``windows(10.0.17763.5820)/amd64`` or ``linux(+gpu)/arm64``.  Characters that would be
ambiguous inside the parentheses (``% + ( ) /``) are percent-encoded, as containerd does.

CPU ``features`` are not part of the specifier (no tool writes them there); they travel in
their own field and on the command line as ``--features a,b``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hostinfo.known import KNOWN_ARCHES
from hostinfo.normalize import normalize_arch, normalize_os


class PlatformError(ValueError):
    """A platform string or descriptor that cannot be understood; the message says why."""


_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_OS_PART = re.compile(r"^([A-Za-z0-9_.-]+)(?:\(([^()+]*)((?:\+[^()+]+)*)\))?$")
_ENCODE = str.maketrans({"%": "%25", "+": "%2B", "(": "%28", ")": "%29", "/": "%2F"})


@dataclass(frozen=True)
class Platform:
    """An OCI platform: what an image was built for, or what a host is.

    Frozen so that it can be a dict key and shared between requests without copies.
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, specifier: str, features: tuple[str, ...] = ()) -> Platform:
        """Parse a specifier such as ``linux/arm/v7`` into a normalized platform."""
        return normalize(parse_raw(specifier, features))

    @classmethod
    def from_descriptor(cls, platform: Any) -> Platform:
        """Read the ``platform`` object of an index entry or the fields of an image config.

        Returns the raw values (not normalized) so that callers can log what the image says.
        """
        if not isinstance(platform, dict):
            raise PlatformError("platform is not a JSON object")
        os_name = platform.get("os")
        arch = platform.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
            raise PlatformError("platform lacks a string 'os' or 'architecture'")
        variant = platform.get("variant") or ""
        os_version = platform.get("os.version") or ""
        os_features = platform.get("os.features") or []
        features = platform.get("features") or []
        if not isinstance(variant, str) or not isinstance(os_version, str):
            raise PlatformError("platform 'variant' and 'os.version' must be strings")
        if not _is_str_list(os_features) or not _is_str_list(features):
            raise PlatformError("platform 'os.features' and 'features' must be lists of strings")
        return cls(
            os=os_name,
            architecture=arch,
            variant=variant,
            os_version=os_version,
            os_features=tuple(os_features),
            features=tuple(features),
        )

    def __str__(self) -> str:
        return format_platform(self)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def normalize(platform: Platform) -> Platform:
    """The canonical form of a platform; idempotent, and the same for hosts and descriptors."""
    arch, variant = normalize_arch(platform.architecture, platform.variant)
    return Platform(
        os=normalize_os(platform.os),
        architecture=arch,
        variant=variant,
        os_version=platform.os_version.strip(),
        os_features=tuple(sorted(set(platform.os_features))),
        features=tuple(sorted({f.strip().lower() for f in platform.features if f.strip()})),
    )


def format_platform(platform: Platform) -> str:
    """``os[(version+feature...)]/arch[/variant]``; CPU features are not part of it."""
    options = platform.os_version.translate(_ENCODE)
    options += "".join("+" + f.translate(_ENCODE) for f in sorted(platform.os_features))
    head = f"{platform.os}({options})" if options else platform.os
    parts = [head, platform.architecture] + ([platform.variant] if platform.variant else [])
    return "/".join(parts)


def parse_raw(specifier: str, features: tuple[str, ...]) -> Platform:
    text = specifier.strip()
    if not text:
        raise PlatformError("empty platform string; expected e.g. linux/arm64 or linux/arm/v7")
    parts = text.split("/")
    if len(parts) > 3:
        raise PlatformError(f"{specifier!r}: too many '/' parts; expected os/arch[/variant]")
    if len(parts) == 1:
        arch, _ = normalize_arch(parts[0])
        if not _COMPONENT.match(parts[0]) or arch not in KNOWN_ARCHES:
            raise PlatformError(
                f"{specifier!r}: a single word must be a known architecture; "
                "otherwise write os/arch[/variant], e.g. linux/arm/v7"
            )
        return Platform(os="linux", architecture=parts[0], features=features)
    m = _OS_PART.match(parts[0])
    if m is None:
        raise PlatformError(
            f"{specifier!r}: invalid OS part {parts[0]!r}; expected e.g. linux, windows(10.0.17763) or linux(+feature)"
        )
    for part in parts[1:]:
        if not _COMPONENT.match(part):
            raise PlatformError(f"{specifier!r}: invalid component {part!r}")
    os_features = tuple(unquote(f) for f in m.group(3).split("+") if f) if m.group(3) else ()
    return Platform(
        os=m.group(1),
        architecture=parts[1],
        variant=parts[2] if len(parts) == 3 else "",
        os_version=unquote(m.group(2) or ""),
        os_features=os_features,
        features=features,
    )
