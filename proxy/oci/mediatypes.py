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
    """What the pulling client can take.

    ``accepts`` is ``None`` when the request had no ``Accept`` header: such a client gets the
    chosen manifest as it is.  ``zstd`` says whether it can unpack zstd layers; clients that
    cannot get the gzip twin when an index offers both.
    """

    accepts: frozenset[str] | None = None
    zstd: bool = False

    def accepts_type(self, media_type: str) -> bool:
        if self.accepts is None:
            return True
        return media_type in self.accepts or "*/*" in self.accepts

    @property
    def accepts_index(self) -> bool:
        return self.accepts is not None and bool(self.accepts & INDEX_TYPES)


def parse_accept(values: list[str]) -> frozenset[str] | None:
    """Media types named in ``Accept`` headers (parameters such as ``q=`` dropped)."""
    if not values:
        return None
    types = set()
    for value in values:
        for part in value.split(","):
            media = part.split(";", 1)[0].strip().lower()
            if media:
                types.add(media)
    return frozenset(types)
