"""What the two halves of ``platproxy bundle`` share: the annotations that name an image in a
bundle's ``index.json``, the error that stops either, and opening the cache they work on."""

from __future__ import annotations

from proxy.config import Config
from proxy.storage.factory import NoCache, Storage, open_storage

REF_NAME = "org.opencontainers.image.ref.name"
REGISTRY = "io.platproxy.registry"
REPOSITORY = "io.platproxy.repository"
TAG = "io.platproxy.tag"
PLATFORMS = "io.platproxy.platforms"


class BundleError(Exception):
    """What stops an export or an import; one line, exit 2, nothing left half-written."""


async def open_cache(config: Config, must_exist: bool) -> Storage:
    """The configured store (a cache directory or a bucket); ``NoCache`` when a directory that
    must hold a cache does not."""
    root = config.cache.path()
    if must_exist and config.store.backend != "s3" and not (root / "index.db").exists():
        raise NoCache(f"no platproxy cache at {root}")
    return await open_storage(config, root)
