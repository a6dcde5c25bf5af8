"""Which upstream serves a repository name, and under which name there.

Order: containerd's ``?ns=<registry>`` (a mirror request names the registry it stands for);
else a path prefix naming a configured registry (``localhost:5000/ghcr.io/o/r``); else the
default upstream.  Docker Hub's single-component names get ``library/``.  A ``ns`` that names no
configured upstream is refused: only configured upstreams are ever contacted.

A first component ``platform.<os>.<arch>[.<variant>]`` is a selector a person can type
(``localhost:5000/platform.linux.arm64.v8/library/alpine:3.20``): tags under it are resolved for
that platform, whoever asks; ``platform.all`` gets the upstream's own answer (the index, for
``skopeo copy --all``).  Component rules allow dots, and no registry's namespace starts with
``platform.`` by accident; the rest of the name routes as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import Config, UpstreamConfig, check_platform
from proxy.errors import InvalidName, NameUnknown

SELECTOR = "platform."
ALL = "all"
"""The selector that asks for the index itself."""


@dataclass(frozen=True)
class Route:
    upstream: UpstreamConfig
    repo: str
    """The repository name at the upstream."""
    name: str = ""
    """The repository name as the client addressed it (what a schema 1 manifest names)."""
    selector: str = ""
    """The platform the name's selector asks for (``linux/arm64/v8``), ``all``, or empty."""

    @property
    def client_name(self) -> str:
        return self.name or self.repo


def route(name: str, ns: str | None, config: Config) -> Route:
    selector, rest = split_selector(name)
    if ns:
        upstream = upstream_named(config, ns)
        if upstream is None:
            raise NameUnknown(f"registry {ns!r} (from ns=) is not a configured upstream", {"ns": ns[:300]})
        return Route(upstream, _hub_name(upstream, rest), name, selector)
    first, slash, tail = rest.partition("/")
    named = upstream_named(config, first) if slash else None
    if named is not None:
        return Route(named, _hub_name(named, tail), name, selector)
    upstream = default_upstream(config)
    return Route(upstream, _hub_name(upstream, rest), name, selector)


def split_selector(name: str) -> tuple[str, str]:
    """``(selector, rest of the name)``: ``platform.linux.arm64.v8/library/x`` -> ``linux/arm64/v8``."""
    first, slash, rest = name.partition("/")
    if not slash or not first.startswith(SELECTOR):
        return "", name
    spec = first[len(SELECTOR) :]
    if spec == ALL:
        return ALL, rest
    try:
        platform = str(check_platform(spec.replace(".", "/")))
    except ValueError as exc:
        expected = "platform.<os>.<arch>[.<variant>] or platform.all"
        raise InvalidName(f"platform selector {first!r}: {exc}", {"selector": first, "expected": expected}) from None
    return platform, rest


def upstream_named(config: Config, name: str) -> UpstreamConfig | None:
    """The upstream one of whose names (or aliases) is ``name``, case-insensitively."""
    wanted = name.lower()
    return next((u for u in config.upstreams if any(n.lower() == wanted for n in u.names)), None)


def default_upstream(config: Config) -> UpstreamConfig:
    for u in config.upstreams:
        if u.name == config.default_upstream:
            return u
    return config.upstreams[0]


def _hub_name(upstream: UpstreamConfig, name: str) -> str:
    return f"library/{name}" if upstream.is_docker_hub and "/" not in name else name
