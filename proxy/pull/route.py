"""Which upstream serves a repository name, and under which name there.

Order: containerd's ``?ns=<registry>`` (a mirror request names the registry it stands for);
else a path prefix naming a configured registry (``localhost:5000/ghcr.io/o/r``); else the
default upstream.  Docker Hub's single-component names get ``library/``.  A ``ns`` that names no
configured upstream is refused: only configured upstreams are ever contacted.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import Config, UpstreamConfig
from proxy.errors import NameUnknown


@dataclass(frozen=True)
class Route:
    upstream: UpstreamConfig
    repo: str
    """The repository name at the upstream."""
    name: str = ""
    """The repository name as the client addressed it (what a schema 1 manifest names)."""

    @property
    def client_name(self) -> str:
        return self.name or self.repo


def route(name: str, ns: str | None, config: Config) -> Route:
    by_name = {n.lower(): u for u in config.upstreams for n in u.names}
    if ns:
        upstream = by_name.get(ns.lower())
        if upstream is None:
            raise NameUnknown(f"registry {ns!r} (from ns=) is not a configured upstream", {"ns": ns[:300]})
        return Route(upstream, _hub_name(upstream, name), name)
    first, slash, rest = name.partition("/")
    if slash and first in by_name:
        upstream = by_name[first]
        return Route(upstream, _hub_name(upstream, rest), name)
    upstream = default_upstream(config)
    return Route(upstream, _hub_name(upstream, name), name)


def default_upstream(config: Config) -> UpstreamConfig:
    for u in config.upstreams:
        if u.name == config.default_upstream:
            return u
    return config.upstreams[0]


def _hub_name(upstream: UpstreamConfig, name: str) -> str:
    return f"library/{name}" if upstream.is_docker_hub and "/" not in name else name
