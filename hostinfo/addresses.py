"""This machine's own network addresses, for a mirror that must tell its own host's clients (a
sidecar's engine) from remote nodes: parsing is pure (``local_ipv4``, ``local_ipv6``), reading
the kernel's tables is ``own_addresses``.  Linux's ``/proc/net/fib_trie`` lists every address
the host answers as its own (``/32 host LOCAL``), ``/proc/net/if_inet6`` every IPv6 one; where
neither can be read, only loopback counts.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

LOOPBACK = ("127.0.0.0/8", "::1/128")


def local_ipv4(fib_trie: str) -> set[str]:
    """The addresses marked ``/32 host LOCAL`` in ``/proc/net/fib_trie``."""
    found, previous = set(), ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("/32 host LOCAL") and previous:
            found.add(previous)
        previous = text.removeprefix("|-- ") if text.startswith("|-- ") else ""
    return {a for a in found if _is_ip(a)}


def local_ipv6(if_inet6: str) -> set[str]:
    """The addresses of ``/proc/net/if_inet6`` (32 hex digits, the first field of each line)."""
    found = set()
    for line in if_inet6.splitlines():
        raw = line.split()[0] if line.split() else ""
        if len(raw) == 32:
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    return found


def own_addresses(proc: Path = Path("/proc/net")) -> list[str]:
    """CIDRs of this host: loopback, and each address its kernel answers as its own."""
    found: set[str] = set()
    for name, parse in (("fib_trie", local_ipv4), ("if_inet6", local_ipv6)):
        try:
            found |= parse((proc / name).read_text())
        except (OSError, ValueError):
            continue
    return [*LOOPBACK, *sorted(f"{a}/{32 if ':' not in a else 128}" for a in found)]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
