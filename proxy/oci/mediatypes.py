"""Media types of the Docker and OCI manifest formats, and what a client's ``Accept`` allows."""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES | {DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED}

#: What platproxy asks upstreams for: every type it can store and serve.
UPSTREAM_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

ZSTD_ANNOTATION = "io.github.containers.compression.zstd"
REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"


@dataclass(frozen=True)
class ClientCaps:
    """What the pulling client can read (``proxy.oci.clients.classify`` builds it from its headers).

    ``accepts`` holds the media types it named (wildcards dropped; empty for the oldest engines,
    which send no ``Accept`` and read only signed schema 1).  ``zstd`` says whether it can unpack
    zstd layers: clients that cannot get the gzip twin when an index offers both.  ``engine`` is
    the engine its ``User-Agent`` names (``docker/19.3.2``), for logs.
    """

    accepts: frozenset[str] = frozenset()
    zstd: bool = False
    engine: str = ""

    def accepts_type(self, media_type: str) -> bool:
        return media_type in self.accepts

    @property
    def accepts_index(self) -> bool:
        return bool(self.accepts & INDEX_TYPES)
