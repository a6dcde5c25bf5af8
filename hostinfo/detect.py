"""Combine uname and /proc/cpuinfo into the host's platform, recording why.

``detect`` is a pure function of its four inputs (uname sysname, uname machine, cpuinfo text,
byte order), so it is tested on real dumps of real machines; reading the live system is the
job of ``hostinfo.probe``.  Every decided field records its source: which line or signal
decided it, so that "why did this node get arm/v6?" has an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostinfo.arm import arm_variant
from hostinfo.cpuinfo import CpuInfo, parse_cpuinfo
from hostinfo.details import arm64_level, power_generation, s390x_machine
from hostinfo.known import KNOWN_ARCHES
from hostinfo.normalize import is_mips_family, mips_arch, normalize_arch, normalize_os
from hostinfo.platform import Platform
from hostinfo.x86 import amd64_level


class HostInfoError(ValueError):
    """Input that cannot describe a host (unknown machine name, unreadable cpuinfo)."""


@dataclass(frozen=True)
class HostDetails:
    """Finer facts beside the OCI platform; empty strings where unknown."""

    cpu_model: str = ""
    level: str = ""
    """arm64 ``v8.2``/``v9.0`` (known cores), ppc64(le) ``power9``, s390x ``z16``."""


@dataclass(frozen=True)
class Detection:
    """The detected platform with the source of each decided field."""

    platform: Platform
    details: HostDetails
    sources: dict[str, str]


def detect(sysname: str, machine: str, cpuinfo_text: str | None, byteorder: str) -> Detection:
    """Detect the platform from uname, /proc/cpuinfo text and the byte order.

    ``cpuinfo_text`` may be ``None`` where the file does not exist (other kernels); detection
    then rests on uname alone.
    """
    raw_machine = machine.strip()
    if not raw_machine:
        raise HostInfoError("the machine name (uname -m) is empty")
    if byteorder not in ("little", "big"):
        raise HostInfoError(f"byte order must be 'little' or 'big', not {byteorder!r}")
    cpu = parse_cpuinfo(cpuinfo_text) if cpuinfo_text is not None else None
    sources: dict[str, str] = {"os": f"uname -s {sysname}"}
    os_name = normalize_os(sysname) or "linux"
    if is_mips_family(raw_machine):
        arch, variant = mips_arch(raw_machine, byteorder), ""
        sources["architecture"] = f"uname -m {raw_machine} + byte order {byteorder}"
    else:
        arch, variant = normalize_arch(raw_machine)
        sources["architecture"] = f"uname -m {raw_machine}"
    if arch not in KNOWN_ARCHES:
        raise HostInfoError(f"unknown machine name {raw_machine!r} (uname -m)")

    details = HostDetails()
    if arch == "amd64":
        level, why = amd64_level(cpu.features if cpu else ())
        variant = f"v{level}"
        sources["variant"] = f"cpuinfo:flags ({why})" if cpu else "default: no cpuinfo"
    elif arch == "arm":
        variant, sources["variant"] = arm_variant(cpu, raw_machine)
    elif arch == "arm64":
        variant, sources["variant"] = "v8", "default: arm64 is v8 (finer levels in details)"
    elif variant:
        sources["variant"] = f"uname -m {raw_machine}"

    if cpu is not None:
        details = _details(arch, cpu, sources)
        if cpu.feature_key:
            sources["features"] = f"cpuinfo:{cpu.feature_key} (tokens on every line)"
    platform = Platform(
        os=os_name,
        architecture=arch,
        variant=variant,
        features=tuple(sorted(cpu.features)) if cpu else (),
    )
    return Detection(platform=platform, details=details, sources=sources)


def _details(arch: str, cpu: CpuInfo, sources: dict[str, str]) -> HostDetails:
    name, key = cpu.cpu_name
    if name:
        sources["cpu_model"] = f"cpuinfo:{key}"
    level, level_source = "", ""
    if arch == "arm64":
        level, level_source = arm64_level(cpu)
    elif arch in ("ppc64le", "ppc64"):
        level, level_source = power_generation(cpu)
    elif arch == "s390x":
        level, level_source = s390x_machine(cpu)
    if level:
        sources["level"] = level_source
    return HostDetails(cpu_model=name, level=level)
