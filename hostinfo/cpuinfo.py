"""Parse /proc/cpuinfo text into plain facts.

The format differs by architecture and by kernel age, so the parser assumes little:
- every ``key : value`` line is split on the first colon and both sides stripped; keys are
  matched case-insensitively (containerd uses ``EqualFold("Cpu architecture")``);
- the first value seen for a key wins, except that old 32-bit ARM kernels print the CPU name
  as ``Processor : ARMv6-compatible ...`` beside numbered ``processor : 0`` lines, so a
  ``processor`` value that is not a number is kept as the CPU name instead;
- features are the tokens common to *every* ``flags``/``Features`` line: on big.LITTLE systems
  the little cores may lack what the big ones have, and an image must run on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_FEATURE_KEYS = ("flags", "features")
_NAME_KEYS = ("model name", "processor name", "cpu model", "cpu", "uarch")


class CpuInfoError(ValueError):
    """The text is not a /proc/cpuinfo dump (empty, binary or without any ``key: value``)."""


@dataclass(frozen=True)
class CpuInfo:
    """What one /proc/cpuinfo says, reduced to what detection needs."""

    fields: dict[str, str]
    """First value of each lower-cased key."""
    values: dict[str, tuple[str, ...]]
    """Every distinct value of each lower-cased key, in order of appearance."""
    features: frozenset[str]
    """Tokens present on every features line (``flags`` on x86, ``Features`` elsewhere)."""
    feature_key: str = ""
    """The key the features came from, as written in the dump (for the source record)."""
    old_processor_name: str = field(default="")
    """The CPU name from an old ARM kernel's ``Processor :`` line, if any."""

    def get(self, key: str) -> str:
        return self.fields.get(key.lower(), "")

    @property
    def cpu_name(self) -> tuple[str, str]:
        """The best human name of the CPU and the key it came from."""
        for key in _NAME_KEYS:
            if self.fields.get(key):
                return self.fields[key], key
        if self.old_processor_name:
            return self.old_processor_name, "Processor"
        return "", ""


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of /proc/cpuinfo; raises ``CpuInfoError`` for text that is not one."""
    if not text.strip():
        raise CpuInfoError("cpuinfo is empty")
    if "\x00" in text:
        raise CpuInfoError("cpuinfo contains NUL bytes: not a text dump")
    fields: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    feature_sets: list[frozenset[str]] = []
    feature_key = ""
    old_name = ""
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key = " ".join(key.split())
        lower = key.lower()
        value = value.strip()
        if not lower:
            continue
        if lower == "processor" and value and not value.isdigit():
            old_name = old_name or value
            continue
        if lower in _FEATURE_KEYS:
            feature_sets.append(frozenset(value.split()))
            feature_key = feature_key or key
        fields.setdefault(lower, value)
        seen = values.setdefault(lower, [])
        if value not in seen:
            seen.append(value)
    if not fields and not old_name:
        raise CpuInfoError("cpuinfo has no 'key : value' lines")
    common = frozenset.intersection(*feature_sets) if feature_sets else frozenset()
    return CpuInfo(
        fields=fields,
        values={k: tuple(v) for k, v in values.items()},
        features=common,
        feature_key=feature_key,
        old_processor_name=old_name,
    )
