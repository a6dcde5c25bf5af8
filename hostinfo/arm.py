"""The 32-bit ARM variant (v5..v8) from /proc/cpuinfo and ``uname -m``.

Signals, strongest first:
1. ``CPU architecture`` (the kernel's ``proc_arch[]`` table): ``5TE`` -> v5, ``7`` -> v7, ...
2. The ARMv6 quirk: ARM11 cores (Raspberry Pi 1 and Zero, old NAS boards) are reported as
   ``CPU architecture: 7`` because their memory model looks like VMSAv7.  Their name says
   ``ARMv6-compatible``, in ``model name`` or, on old kernels, in a ``Processor`` line; and
   ``uname -m`` says ``armv6l``.  Either demotes 7 to v6.
3. ``uname -m`` alone (``armv5tel``, ``armv6l``, ``armv7l``, ``armv8l``) when the field is missing,
   as under some emulators.
A demotion based on the FPU (no ``vfpv3``/``vfpv4`` -> v6, which some detectors apply) is not
applied: on the corpus it agrees with the rules above on every case, so it adds nothing, and
ARMv7 cores without VFPv3 exist (it would wrongly demote them).
"""

from __future__ import annotations

import re

from hostinfo.cpuinfo import CpuInfo

#: ``CPU architecture`` values (linux ``arch/arm/kernel/setup.c``) to OCI variants.
_ARCH_FIELD: dict[str, str] = {
    "3": "v3", "4": "v4", "4t": "v4", "5": "v5", "5t": "v5", "5te": "v5", "5tej": "v5",
    "6": "v6", "6tej": "v6", "7": "v7", "7m": "v7", "8": "v8", "aarch64": "v8",
}  # fmt: skip
_UNKNOWN_ARCH = re.compile(r"^\?\((1[1-7])\)$")
_UNAME = re.compile(r"^armv([5-8])")


def arm_variant(cpu: CpuInfo | None, machine: str) -> tuple[str, str]:
    """Return ``(variant, source)`` for a 32-bit ARM host."""
    uname_variant = ""
    m = _UNAME.match(machine.lower())
    if m:
        uname_variant = f"v{m.group(1)}"
    field = cpu.get("CPU architecture").lower() if cpu else ""
    variant = _ARCH_FIELD.get(field, "")
    if not variant and _UNKNOWN_ARCH.match(field):
        variant = "v7"  # "?(11)".."?(17)": newer-than-v7 32-bit kernels print these
    if variant:
        source = f"cpuinfo:CPU architecture {field}"
        if variant == "v7" and cpu is not None:
            name, key = cpu.cpu_name
            if name.startswith("ARMv6-compatible"):
                return "v6", f"cpuinfo:{key} ARMv6-compatible (CPU architecture {field})"
        if variant == "v7" and uname_variant == "v6":
            return "v6", f"uname:{machine} (CPU architecture {field})"
        return variant, source
    if uname_variant:
        return uname_variant, f"uname:{machine} (no CPU architecture line)"
    return "v7", "default: arm without CPU architecture or a versioned uname"
