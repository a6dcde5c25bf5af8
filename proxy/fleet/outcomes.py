"""What a resolution meant for the node that asked, in the words of someone moving workloads:
``native`` (the best entry for the platform), a degraded answer (``variant fallback``: an arm/v7
node got arm/v6; ``lower level``: an amd64 v3 host got v1, an arm64 v8.2 node got v8;
``32-bit compat``; ``emulated``), or ``missing`` (no entry of the index runs there).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

NATIVE = "native"
MISSING = "missing"
DEGRADED = ("variant fallback", "lower level", "32-bit compat", "other architecture", "emulated")
OUTCOMES = (NATIVE, *DEGRADED, MISSING)


@dataclass(frozen=True)
class Outcome:
    kind: str
    """One of ``OUTCOMES``."""
    detail: str = ""
    """``v7 node got v6``, ``v3 host got v1``: what the kind means for this pair."""

    @property
    def degraded(self) -> bool:
        return self.kind in DEGRADED

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


def _variant(platform: str) -> str:
    parts = platform.split("/")
    return parts[2] if len(parts) > 2 else ""


def _arch(platform: str) -> str:
    parts = platform.split("/")
    return parts[1] if len(parts) > 1 else ""


@lru_cache(maxsize=4096)
def classify(target: str, chosen: str | None, label: str) -> Outcome:
    """Pure: the outcome of a resolution for ``target`` (``linux/arm/v7``) that chose an entry of
    platform ``chosen`` with the resolver's rank ``label`` (``None``: nothing runs there)."""
    if chosen is None:
        return Outcome(MISSING)
    if label == "emulated":
        return Outcome("emulated", f"{chosen} on {target}")
    if label.startswith("32-bit compat"):
        return Outcome("32-bit compat", f"{_arch(target)} node got {chosen}")
    if _arch(chosen) != _arch(target):
        return Outcome("other architecture", f"{_arch(target)} node got {_arch(chosen)}")
    if label in ("lower level", "baseline"):
        node = "node" if _arch(target) == "arm" else "host"
        kind = "variant fallback" if _arch(target) == "arm" else "lower level"
        got = _variant(chosen) or ("v1" if _arch(target) == "amd64" else "the baseline")
        return Outcome(kind, f"{_variant(target) or 'this'} {node} got {got}")
    return Outcome(NATIVE)
