"""Emulated platforms: what ``binfmt_misc`` handlers (QEMU user emulation) let this host run.

Pure: ``parse_handler`` reads one handler in either of its two forms, the kernel's view
(``/proc/sys/fs/binfmt_misc/<name>``: ``enabled``, ``interpreter …``, ``flags: PF``, ``offset``,
``magic``/``mask`` in hex) or the ``update-binfmts`` package format Debian's qemu-user-static
ships under ``/usr/share/binfmts/`` (``magic \\x7f\\x45…``, ``fix_binary yes``); ``emulated``
turns handlers into the platforms they execute, each with the reason it is or is not usable.

The platform comes from the ELF header the magic matches (after its mask): class (32/64-bit),
data (endianness) and ``e_machine``.  A handler is usable for containers only when enabled (and
binfmt_misc itself is enabled) and with the ``F`` (fix binary) flag: without it the kernel opens
the interpreter at exec time, inside the container, where the path does not exist.

Facts: the kernel's Documentation/admin-guide/binfmt-misc.rst, the ELF specification's
``e_machine`` values, QEMU's scripts/qemu-binfmt-conf.sh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hostinfo.platform import Platform

# (e_machine, 64-bit, little-endian) -> OCI (architecture, variant)
ELF_MACHINES: dict[tuple[int, bool, bool], tuple[str, str]] = {
    (0xB7, True, True): ("arm64", "v8"),
    (0x28, False, True): ("arm", "v7"),
    (0xF3, True, True): ("riscv64", ""),
    (0x15, True, True): ("ppc64le", ""),
    (0x15, True, False): ("ppc64", ""),
    (0x16, True, False): ("s390x", ""),
    (0x03, False, True): ("386", ""),
    (0x3E, True, True): ("amd64", ""),
    (0x08, True, True): ("mips64le", ""),
    (0x08, True, False): ("mips64", ""),
    (0x08, False, True): ("mipsle", ""),
    (0x08, False, False): ("mips", ""),
    (0x102, True, True): ("loong64", ""),
}
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


class HandlerError(ValueError):
    """A handler file that is not a binfmt_misc handler; the message says why."""


@dataclass(frozen=True)
class Handler:
    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes


@dataclass(frozen=True)
class Emulated:
    """A platform a handler executes, and whether containers can use it."""

    platform: Platform
    handler: str
    interpreter: str
    usable: bool
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"platform": str(self.platform), "handler": self.handler, "interpreter": self.interpreter,
                "usable": self.usable, "reason": self.reason}  # fmt: skip


def _bytes(value: str, name: str) -> bytes:
    """``7f454c46…`` (the kernel's view) or ``\\x7f\\x45…`` (update-binfmts, register strings)."""
    value = value.strip()
    try:
        if "\\x" in value:
            return _ESCAPE.sub(lambda m: chr(int(m[1], 16)), value).encode("latin-1")
        return bytes.fromhex(value)
    except ValueError:
        raise HandlerError(f"{name}: not hex bytes") from None


def parse_handler(name: str, text: str) -> Handler:
    """One handler file, in the kernel's or the update-binfmts format."""
    fields: dict[str, str] = {}
    enabled: bool | None = None
    for line in text.splitlines():
        line = line.strip()
        if line in ("enabled", "disabled"):
            enabled = line == "enabled"
            continue
        key, _, value = line.partition(" ")
        if key:
            fields[key.rstrip(":")] = value.strip()
    if "extension" in fields:
        raise HandlerError(f"{name}: matches a file extension, not an ELF header")
    if "magic" not in fields or "interpreter" not in fields:
        raise HandlerError(f"{name}: no magic or interpreter line: not a binfmt_misc handler")
    magic = _bytes(fields["magic"], f"{name} magic")
    mask = _bytes(fields["mask"], f"{name} mask") if "mask" in fields else b"\xff" * len(magic)
    if len(mask) != len(magic):
        raise HandlerError(f"{name}: mask and magic differ in length")
    offset = fields.get("offset", "0")
    if not offset.isdigit():
        raise HandlerError(f"{name}: offset {offset!r} is not a number")
    flags = fields.get("flags", "")
    if enabled is None:  # update-binfmts format: no state line, yes/no options instead of flags
        enabled = fields.get("disabled", "no") != "yes"
        flags = "".join(f for f, key in (("P", "preserve"), ("F", "fix_binary"), ("C", "credentials"))
                        if fields.get(key) == "yes")  # fmt: skip
    return Handler(name, enabled, fields["interpreter"], flags, int(offset), magic, mask)


def elf_platform(handler: Handler) -> tuple[str, str] | None:
    """The (architecture, variant) the handler's ELF magic names, None if it is no known ELF machine."""
    if handler.offset != 0 or len(handler.magic) < 20:
        return None
    header = handler.magic  # the mask widens matching (i386's accepts either class byte); the magic names the target
    if header[:4] != b"\x7fELF" or header[4] not in (1, 2) or header[5] not in (1, 2):
        return None
    little = header[5] == 1
    machine = int.from_bytes(header[18:20], "little" if little else "big")
    return ELF_MACHINES.get((machine, header[4] == 2, little))


def emulated(handlers: list[Handler], subsystem_enabled: bool = True, os: str = "linux") -> list[Emulated]:
    """Each handler's platform with whether containers can use it, and why (or why not)."""
    out: list[Emulated] = []
    for h in handlers:
        found = elf_platform(h)
        if found is None:
            continue
        arch, variant = found
        if not subsystem_enabled:
            usable, reason = False, "binfmt_misc is disabled (status)"
        elif not h.enabled:
            usable, reason = False, f"handler {h.name} is disabled"
        elif "F" not in h.flags:
            usable, reason = False, f"handler {h.name} lacks the F flag: its interpreter is not reachable in containers"
        else:
            usable, reason = True, f"binfmt_misc handler {h.name} ({h.interpreter}, flags {h.flags})"
        out.append(Emulated(Platform(os=os, architecture=arch, variant=variant), h.name, h.interpreter, usable, reason))
    return out
