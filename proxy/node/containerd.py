"""Where a running containerd reads its registry host configuration, from ``containerd config
dump`` (the merged configuration it runs with), pure.

- containerd 1.x, CRI plugin: ``[plugins."io.containerd.grpc.v1.cri".registry] config_path``
  (containerd docs/hosts.md, "CRI"; docs/cri/config.md);
- containerd 2.x: ``[plugins."io.containerd.cri.v1.images".registry] config_path``
  (containerd 2.0 docs/cri/config.md, the images plugin split out of the CRI plugin);
- 2.2's default names two directories, ``/etc/containerd/certs.d:/etc/docker/certs.d``, in the
  PATH style (docs/hosts.md, "Registry Host Namespace"; containerd#12636): each is read, the
  first that has a host's directory wins.

An unset ``config_path`` means the CRI does not read hosts directories at all: ``node setup``
then writes the conventional ``/etc/containerd/certs.d`` and says which line to add.
"""

from __future__ import annotations

import tomllib

CONVENTIONAL = "/etc/containerd/certs.d"
_SECTIONS = ("io.containerd.cri.v1.images", "io.containerd.grpc.v1.cri")


class DumpError(ValueError):
    """``containerd config dump`` printed something that is not its TOML."""


def config_paths(dump: str) -> list[str]:
    """The hosts directories the running containerd reads, in order; ``[]`` when none is set."""
    try:
        config = tomllib.loads(dump)
    except tomllib.TOMLDecodeError as exc:
        raise DumpError(f"containerd config dump is not TOML: {exc}") from None
    plugins = config.get("plugins", {})
    for section in _SECTIONS:
        registry = plugins.get(section, {}).get("registry", {}) if isinstance(plugins, dict) else {}
        path = registry.get("config_path", "") if isinstance(registry, dict) else ""
        if isinstance(path, str) and path.strip():
            return [p for p in path.split(":") if p]
    return []


def config_path_line(version: int) -> str:
    """What to add to ``config.toml`` when ``config_path`` is unset, for this config version."""
    section = "io.containerd.cri.v1.images" if version >= 3 else "io.containerd.grpc.v1.cri"
    return f'[plugins."{section}".registry]\n  config_path = "{CONVENTIONAL}"'
