"""The platform values that exist: every table of known-good values, in one place.

Architectures and operating systems are Go's (``go tool dist list``; every OCI tool follows
GOOS/GOARCH, and containerd/platforms validates against the same lists).  Variants are the ones
the OCI image spec names for each architecture: arm v5-v8, arm64 v8 and v9 with their point
releases, amd64 v1-v4 (the x86-64 micro-architecture levels of the psABI), and the POWER generations
for ppc64le (POWER8 on) and ppc64 (POWER5 on).  An architecture missing from ``VARIANTS`` defines none.
"""

from __future__ import annotations

import re

#: The architectures Go (and so every OCI tool) knows.
KNOWN_ARCHES = frozenset(
    {
        "386", "amd64", "amd64p32", "arm", "arm64", "arm64be", "armbe", "loong64", "mips",
        "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le",
        "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
    }
)  # fmt: skip

KNOWN_OS = frozenset(
    {
        "aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux",
        "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
    }
)  # fmt: skip

#: Which variants are real for each architecture (after normalization).
VARIANTS: dict[str, re.Pattern[str]] = {
    "amd64": re.compile(r"^v[1-4]$"),
    "arm": re.compile(r"^v[5-8]$"),
    "arm64": re.compile(r"^v8(\.[1-9])?$|^v9(\.[1-5])?$"),
    "ppc64le": re.compile(r"^$|^power(8|9|10|11)$"),
    "ppc64": re.compile(r"^$|^power([5-9]|10|11)$"),
}
