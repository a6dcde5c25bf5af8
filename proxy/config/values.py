"""Value types every section shares: durations, sizes, addresses, real platforms, the error."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

from hostinfo.platform import Platform
from hostinfo.validate import require_real

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_N = TypeVar("_N", int, float)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZES = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class ConfigError(ValueError):
    """A configuration mistake; the message names the key and what was expected."""


def parse_duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative: a duration is 0 or more (30s, 5m, 1h or seconds)")
        return float(value)
    m = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError("expected a duration such as 30s, 5m, 1h or a number of seconds")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative: a size is 0 or more (4MiB, 20GiB or bytes)")
        return value
    m = _SIZE.match(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError("expected a size such as 4MiB, 20GiB or a number of bytes")
    return int(float(m.group(1)) * _SIZES[(m.group(2) or "b").lower()])


def _positive(value: _N) -> _N:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""0 or more: 0 is meaningful where the key says so (``tag_ttl = 0``: always revalidate)."""
Size = Annotated[int, BeforeValidator(parse_size)]
"""0 or more: 0 is meaningful where the key says so (``max_size = 0``: no budget)."""
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
"""A timeout or period: 0 would mean never waiting (or spinning), so it is refused."""
Limit = Annotated[int, BeforeValidator(parse_size), AfterValidator(_positive)]


def host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:5000")
    return value


class Section(BaseModel):
    """A table of the file: unknown keys refused (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or CIDR range such as 10.3.0.0/16") from None


def check_platform(value: str) -> Platform:
    """A platform an operator names (a rule, an override, a flag): parsed, normalized and real
    (``hostinfo.validate.require_real``; ``PlatformError`` is a ``ValueError``)."""
    return require_real(value)
