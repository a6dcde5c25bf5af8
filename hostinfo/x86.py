"""The x86-64 micro-architecture level (v1..v4) from the ``flags`` line.

The levels are the psABI's ("Micro-Architecture Levels"), spelled as Linux prints them in
/proc/cpuinfo: SSE3 is shown as ``pni`` and LZCNT as ``abm``; OSXSAVE is never shown, and
``xsave`` stands in for it (Linux clears the AVX family when XSAVE is disabled).  containerd
never detects the level, which is why v2/v3-only images fail there; we always do.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Flags each level adds on top of the one below it.
LEVEL_FLAGS: dict[int, frozenset[str]] = {
    1: frozenset({"cmov", "cx8", "fpu", "fxsr", "mmx", "syscall", "sse", "sse2"}),
    2: frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
    3: frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    4: frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
}


def amd64_level(flags: Iterable[str]) -> tuple[int, str]:
    """Return the highest level whose flags (and all lower levels' flags) are present.

    The second value explains the answer: which flags the next level lacks.  Level 1 is the
    floor: an x86-64 kernel runs, so the baseline is there even when a guest hides flags.
    """
    have = set(flags)
    level = 1
    for candidate in (2, 3, 4):
        missing = LEVEL_FLAGS[candidate] - have
        if missing:
            return level, f"v{candidate} lacks {' '.join(sorted(missing))}"
        level = candidate
    return level, "all v4 flags present"
