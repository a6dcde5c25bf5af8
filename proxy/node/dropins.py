"""The drop-in each runtime reads to pull through the mirror, as text (pure): a containerd
``hosts.toml`` per registry (the node's platform as a header the mirror resolves for), Docker's
``daemon.json`` with the mirror merged into ``registry-mirrors`` (every other key kept), a
``registries.conf.d`` drop-in for podman and CRI-O, and k3s's ``registries.yaml``.  The upstream
registry stays each runtime's fallback: a mirror that is down never stops a pull.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

HEADER = "X-Platproxy-Platform"
MARK = "written by platproxy node setup"


class DropInError(ValueError):
    """A file that is there cannot be merged (not JSON, not an object); the message says where."""


def hosts_toml(mirror: str, platform: str, ca: str = "") -> str:
    """containerd: try the mirror first, declaring this node's platform; the registry's own server
    stays the fallback (no ``server`` line)."""
    lines = [f"# {MARK}: pulls try the mirror first and declare this node's platform ({platform}).",
             f'[host."{mirror}"]', '  capabilities = ["pull", "resolve"]']  # fmt: skip
    if ca:
        lines.append(f'  ca = "{ca}"')
    lines += [f'  [host."{mirror}".header]', f'    {HEADER} = ["{platform}"]']
    return "\n".join(lines) + "\n"


def merge_daemon_json(existing: str | None, mirror: str) -> str:
    """Docker: ``registry-mirrors`` with the mirror first, every other key as it was.  An existing
    file that already names the mirror is returned unchanged (byte for byte)."""
    data: object = {}
    if existing is not None and existing.strip():
        try:
            data = json.loads(existing)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            raise DropInError(f"is not JSON (line {line}): {exc}") from None
    if not isinstance(data, dict):
        raise DropInError("is not a JSON object")
    mirrors = data.get("registry-mirrors", [])
    if not isinstance(mirrors, list):
        raise DropInError('"registry-mirrors" is not a list')
    if mirror in mirrors and existing is not None:
        return existing
    data["registry-mirrors"] = [mirror, *(m for m in mirrors if m != mirror)]
    return json.dumps(data, indent=2) + "\n"


def registries_conf(mirror: str, registries: list[str]) -> str:
    """podman, CRI-O, skopeo: one ``[[registry]]`` per registry, the mirror first."""
    parts = urlsplit(mirror)
    location = parts.netloc + parts.path.rstrip("/")
    lines = [f"# {MARK}: pulls of these registries try the mirror first."]
    for registry in registries:
        lines += ["", "[[registry]]", f'prefix = "{registry}"', f'location = "{registry}"', "",
                  "[[registry.mirror]]", f'location = "{location}"']  # fmt: skip
        if parts.scheme == "http":
            lines.append("insecure = true")
    return "\n".join(lines) + "\n"


def k3s_registries(mirror: str, registries: list[str]) -> str:
    """k3s: ``mirrors:`` with the mirror as each registry's first endpoint."""
    lines = [f"# {MARK}: k3s reads this at start (restart k3s or k3s-agent).", "mirrors:"]
    for registry in registries:
        lines += [f'  "{registry}":', "    endpoint:", f'      - "{mirror}"']
    return "\n".join(lines) + "\n"
