"""The registry as the command line meets it: a client for a registry named in an image
reference, and the resolver's ``ContentSource`` straight from it, nothing kept."""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.config import LimitsConfig, UpstreamConfig, is_loopback
from proxy.errors import UpstreamError
from proxy.oci.names import DOCKER_HUB_ALIASES, DOCKER_HUB_URL
from proxy.registry.client import Upstream
from proxy.registry.transport import read_limited
from proxy.sizes import MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE


class UpstreamSource:
    """The resolver's ``ContentSource`` straight from a registry, nothing kept (the command line)."""

    def __init__(self, up: Upstream, repo: str) -> None:
        self.up = up
        self.repo = repo

    async def manifest(self, digest: str) -> bytes | None:
        try:
            return (await self.up.get_manifest(self.repo, digest, MAX_MANIFEST_SIZE))[0]
        except UpstreamError:
            return None

    async def blob(self, digest: str) -> bytes | None:
        try:
            async with self.up.open_blob(self.repo, digest) as resp:
                return await read_limited(resp, MAX_CONFIG_SIZE)
        except UpstreamError:
            return None


def upstream_for_registry(registry: str) -> Upstream:
    """A client for a registry named in an image reference: Docker Hub at its API host, a loopback
    registry over plain HTTP, any other over HTTPS with verification."""
    if registry in DOCKER_HUB_ALIASES:
        url = DOCKER_HUB_URL
    else:
        host = urlsplit(f"//{registry}").hostname or registry
        url = f"{'http' if is_loopback(host) else 'https'}://{registry}"
    return Upstream(UpstreamConfig(name=registry, url=url), LimitsConfig())
