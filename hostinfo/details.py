"""Finer facts that are not OCI variants today: CPU model, arm64 level, POWER and z generation.

They never change which manifest is chosen by default (the OCI variant does); they are
reported so that an operator can see what the host really is, and the POWER generation feeds
the ppc64le preference vector (``ppc64le/power9`` before ``ppc64le/power8`` before plain).
"""

from __future__ import annotations

import re

from hostinfo.cpuinfo import CpuInfo

#: Architecture level of known arm64 cores by (``CPU implementer``, ``CPU part``), from the
#: vendors' technical reference manuals.  Unknown cores report no level.
ARM64_CORE_LEVELS: dict[tuple[int, int], str] = {
    (0x41, 0xD03): "v8.0",  # Cortex-A53
    (0x41, 0xD04): "v8.0",  # Cortex-A35
    (0x41, 0xD07): "v8.0",  # Cortex-A57
    (0x41, 0xD08): "v8.0",  # Cortex-A72
    (0x41, 0xD09): "v8.0",  # Cortex-A73
    (0x41, 0xD05): "v8.2",  # Cortex-A55
    (0x41, 0xD0A): "v8.2",  # Cortex-A75
    (0x41, 0xD0B): "v8.2",  # Cortex-A76
    (0x41, 0xD0C): "v8.2",  # Neoverse N1
    (0x41, 0xD0D): "v8.2",  # Cortex-A77
    (0x41, 0xD40): "v8.4",  # Neoverse V1
    (0x41, 0xD41): "v8.2",  # Cortex-A78
    (0x41, 0xD44): "v8.2",  # Cortex-X1
    (0x41, 0xD46): "v9.0",  # Cortex-A510
    (0x41, 0xD47): "v9.0",  # Cortex-A710
    (0x41, 0xD48): "v9.0",  # Cortex-X2
    (0x41, 0xD49): "v9.0",  # Neoverse N2
    (0x41, 0xD4D): "v9.0",  # Cortex-A715
    (0x41, 0xD4E): "v9.0",  # Cortex-X3
    (0x41, 0xD4F): "v9.0",  # Neoverse V2
    (0x41, 0xD80): "v9.2",  # Cortex-A520
    (0x41, 0xD81): "v9.2",  # Cortex-A720
    (0x41, 0xD82): "v9.2",  # Cortex-X4
    (0x41, 0xD84): "v9.2",  # Neoverse V3
    (0x41, 0xD8E): "v9.2",  # Neoverse N3
    (0x43, 0x0A1): "v8.0",  # Cavium ThunderX
    (0x43, 0x0AF): "v8.1",  # Cavium ThunderX2
    (0x46, 0x001): "v8.2",  # Fujitsu A64FX
    (0x48, 0xD01): "v8.2",  # HiSilicon Kunpeng 920
    (0x61, 0x022): "v8.4",  # Apple M1 Icestorm
    (0x61, 0x023): "v8.4",  # Apple M1 Firestorm
    (0x61, 0x032): "v8.6",  # Apple M2 Blizzard
    (0x61, 0x033): "v8.6",  # Apple M2 Avalanche
    (0xC0, 0xAC3): "v8.6",  # AmpereOne
    (0xC0, 0xAC4): "v8.6",  # AmpereOne A
}

#: s390x ``machine =`` type numbers to generations (IBM's published machine types).
S390X_MACHINES: dict[str, str] = {
    "2817": "z196", "2818": "z114", "2827": "zEC12", "2828": "zBC12", "2964": "z13",
    "2965": "z13s", "3906": "z14", "3907": "z14 ZR1", "8561": "z15", "8562": "z15 T02",
    "3931": "z16", "3932": "z16 A02", "9175": "z17",
}  # fmt: skip

_POWER = re.compile(r"POWER(\d+)", re.IGNORECASE)
_S390_MACHINE = re.compile(r"machine\s*=\s*(\w+)")


def _level_key(level: str) -> tuple[int, int]:
    major, _, minor = level.lstrip("v").partition(".")
    return int(major), int(minor or 0)


def arm64_level(cpu: CpuInfo) -> tuple[str, str]:
    """The lowest architecture level among all cores, if every core is known."""
    implementers = cpu.values.get("cpu implementer", ())
    parts = cpu.values.get("cpu part", ())
    if len(implementers) != 1 or not parts:
        return "", ""
    try:
        impl = int(implementers[0], 16)
        levels = [ARM64_CORE_LEVELS.get((impl, int(p, 16))) for p in parts]
    except ValueError:
        return "", ""
    if any(level is None for level in levels):
        return "", ""
    known = [level for level in levels if level is not None]
    lowest = min(known, key=_level_key)
    return lowest, f"cpuinfo:CPU implementer {implementers[0]} CPU part {','.join(parts)}"


def power_generation(cpu: CpuInfo) -> tuple[str, str]:
    m = _POWER.search(cpu.get("cpu"))
    return (f"power{m.group(1)}", "cpuinfo:cpu") if m else ("", "")


def s390x_machine(cpu: CpuInfo) -> tuple[str, str]:
    for key, values in cpu.values.items():
        if key.startswith("processor"):
            for value in values:
                m = _S390_MACHINE.search(value)
                if m and m.group(1) in S390X_MACHINES:
                    return S390X_MACHINES[m.group(1)], f"cpuinfo:{key} machine = {m.group(1)}"
    return "", ""
