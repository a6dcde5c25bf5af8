"""The edge: read the live system, and probe what the running kernel can execute.

Everything here does I/O; everything it returns is handed to the pure functions in
``detect`` and ``compat``.

``auto`` for the 32-bit capabilities reads exactly this:
- **aarch32** (arm64 hosts): ``/sys/devices/system/cpu/aarch32_el0`` where the kernel has it
  (asymmetric SoCs: a non-empty CPU list means yes); otherwise the kernel is asked to execute
  a 84-byte static 32-bit ARM ELF that only calls ``exit(0)``.  ``ENOEXEC`` (no
  ``CONFIG_COMPAT``, or a CPU without AArch32 such as Apple M1) means no.
- **ia32** (amd64 hosts): the same with a static i386 ELF; it runs only when the kernel has
  ``CONFIG_IA32_EMULATION`` and it is not disabled (``ia32_emulation=false``).
The ELF is written to an anonymous ``memfd`` and executed from there: no file is created.
If ``/proc/sys/fs/binfmt_misc`` has an enabled ``qemu-arm``/``qemu-i386`` handler, a successful
run may be emulation, so the answer is no (native execution unproven) and the source says so.
When detecting from given files rather than the live system, ``auto`` means no.

Emulated platforms: every handler file in ``/proc/sys/fs/binfmt_misc`` (or a given directory,
for what-if questions) is parsed by ``binfmt``; a missing or unmounted directory means none.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from dataclasses import replace
from pathlib import Path
from typing import Literal

from hostinfo.binfmt import Emulated, HandlerError, emulated, parse_handler
from hostinfo.compat import Capabilities, HostProfile
from hostinfo.detect import detect
from hostinfo.platform import Platform
from hostinfo.validate import require_real

Setting = Literal["auto", "yes", "no"]
Emulation = Literal["off", "fallback"]

_BINFMT = Path("/proc/sys/fs/binfmt_misc")
_AARCH32_SYSFS = Path("/sys/devices/system/cpu/aarch32_el0")

#: The code of each probe: exit(0) through the 32-bit system call interface.
_I386_EXIT0 = bytes.fromhex("b80100000031dbcd80")  # mov eax,1; xor ebx,ebx; int 0x80
_ARM_EXIT0 = bytes.fromhex("0000a0e30170a0e3000000ef")  # mov r0,#0; mov r7,#1; svc 0


def read_live() -> tuple[str, str, str | None, str]:
    """``(sysname, machine, cpuinfo text or None, byte order)`` of the running system."""
    uname = os.uname()
    try:
        text: str | None = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = None
    return uname.sysname, uname.machine, text, sys.byteorder


def tiny_elf32(machine: int, code: bytes, base: int, flags: int = 0) -> bytes:
    """A minimal static ELF32 little-endian executable: one PT_LOAD segment, no sections."""
    ehsize, phsize = 52, 32
    entry = base + ehsize + phsize
    total = ehsize + phsize + len(code)
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    header = struct.pack("<16sHHIIIIIHHHHHH", ident, 2, machine, 1, entry, ehsize, 0, flags, ehsize, phsize, 1, 0, 0, 0)
    segment = struct.pack("<IIIIIIII", 1, 0, base, base, total, total, 5, 0x1000)
    return header + segment + code


def _binfmt_emulator(prefix: str) -> str:
    try:
        for entry in _BINFMT.iterdir():
            if entry.name.startswith(prefix) and entry.read_text().startswith("enabled"):
                return entry.name
    except OSError:
        return ""
    return ""


def run_elf(image: bytes) -> tuple[bool, str]:
    """Ask the kernel to execute ``image``; ``(ran, what happened)``."""
    try:
        fd = os.memfd_create("platproxy-probe", 0)
    except (AttributeError, OSError) as exc:
        return False, f"cannot create a memfd ({exc})"
    try:
        os.write(fd, image)
        # exec refuses a file that is open for writing (ETXTBSY): reopen it read-only.
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    finally:
        os.close(fd)
    import subprocess  # only for this probe: the other paths of the quick commands start without it

    try:
        done = subprocess.run([f"/proc/self/fd/{ro}"], pass_fds=(ro,), timeout=5, check=False)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            return False, "the kernel refused it (ENOEXEC)"
        return False, f"it could not be executed ({exc.strerror})"
    except subprocess.TimeoutExpired:
        return False, "it did not exit within 5 s"
    finally:
        os.close(ro)
    if done.returncode == 0:
        return True, "it ran and exited 0"
    return False, f"it exited with status {done.returncode}"


def probe_ia32() -> tuple[bool, str]:
    ran, what = run_elf(tiny_elf32(3, _I386_EXIT0, 0x08048000))
    emulator = _binfmt_emulator("qemu-i386")
    if ran and emulator:
        return False, f"probe: a static i386 ELF ran, but binfmt_misc {emulator} may have emulated it"
    return ran, f"probe: static i386 ELF: {what}"


def probe_aarch32() -> tuple[bool, str]:
    try:
        cpus = _AARCH32_SYSFS.read_text().strip()
        return bool(cpus), f"{_AARCH32_SYSFS}: {cpus or '(empty)'}"
    except OSError:
        pass
    ran, what = run_elf(tiny_elf32(40, _ARM_EXIT0, 0x10000, flags=0x05000000))
    emulator = _binfmt_emulator("qemu-arm")
    if ran and emulator:
        return False, f"probe: a static arm ELF ran, but binfmt_misc {emulator} may have emulated it"
    return ran, f"probe: static 32-bit arm ELF: {what}"


def capabilities(
    platform: Platform,
    ia32: Setting = "auto",
    aarch32: Setting = "auto",
    live: bool = True,
    arm64: bool = False,
) -> Capabilities:
    """Decide the cross-architecture capabilities from the settings (probing only when live)."""
    sources: dict[str, str] = {}
    values: dict[str, bool] = {"ia32": False, "aarch32": False}
    for name, setting, applies, probe in (
        ("ia32", ia32, platform.architecture == "amd64", probe_ia32),
        ("aarch32", aarch32, platform.architecture == "arm64", probe_aarch32),
    ):
        if not applies:
            continue
        if setting != "auto":
            values[name] = setting == "yes"
            sources[name] = f"setting: {name}={setting}"
        elif not live:
            sources[name] = f"setting: {name}=auto, detecting from given files: no"
        else:
            values[name], sources[name] = probe()
    if arm64 and platform.architecture == "arm" and platform.variant == "v8":
        sources["arm64"] = "setting: arm64 fallback opted in"
    return Capabilities(
        ia32=values["ia32"], aarch32=values["aarch32"],
        arm64=arm64 and platform.architecture == "arm" and platform.variant == "v8",
        sources=sources,
    )  # fmt: skip


def read_emulated(directory: Path = _BINFMT, os_name: str = "linux") -> tuple[Emulated, ...]:
    """The platforms binfmt_misc handlers in ``directory`` execute; none when it is absent."""
    try:
        names = sorted(p for p in directory.iterdir() if p.is_file() and p.name not in ("register", "status"))
        status = (directory / "status").read_text().strip() if (directory / "status").exists() else "enabled"
    except OSError:
        return ()
    handlers = []
    for path in names:
        try:
            handlers.append(parse_handler(path.name, path.read_text(errors="replace")))
        except (OSError, HandlerError):
            continue  # not an ELF handler (an extension match, an unreadable entry): nothing to emulate
    return tuple(emulated(handlers, status == "enabled", os_name))


def with_emulation(
    caps: Capabilities, os_name: str, emulation: Emulation, binfmt_dir: str, live: bool
) -> tuple[Capabilities, tuple[Emulated, ...]]:
    """The emulation policy on ``caps``, and the handlers: from ``binfmt_dir`` when given, else
    the live system's when detecting it (another machine's handlers are unknown: none)."""
    on = emulation == "fallback"
    if not binfmt_dir and not live:
        return replace(caps, emulation=on), ()
    handlers = read_emulated(Path(binfmt_dir) if binfmt_dir else _BINFMT, os_name)
    sources = dict(caps.sources)
    if on:
        sources["emulation"] = f"setting: emulation=fallback, {sum(e.usable for e in handlers)} usable handlers"
    return replace(caps, emulation=on, sources=sources), handlers


def host_profile(
    override: str = "", features: tuple[str, ...] = (), ia32: Setting = "auto", aarch32: Setting = "auto",
    emulation: Emulation = "off", binfmt_dir: str = "",
) -> HostProfile:  # fmt: skip
    """The host to resolve for: the given platform (with its features), else the live system.

    Handlers are read from ``binfmt_dir`` when given, else from the live system when detecting it
    (an override describes another machine, whose handlers are unknown)."""
    if override:
        platform = require_real(override, features)  # a typo here would change every answer
        profile = HostProfile(platform=platform, capabilities=capabilities(platform, ia32, aarch32, live=False))
    else:
        found = detect(*read_live())
        profile = HostProfile(
            platform=found.platform,
            details=found.details,
            capabilities=capabilities(found.platform, ia32, aarch32, live=True),
        )
    caps, handlers = with_emulation(profile.capabilities, profile.platform.os, emulation, binfmt_dir,
                                    live=not override)  # fmt: skip
    profile = replace(profile, emulated=handlers, capabilities=caps)
    return profile
