"""Who is pulling: what a client can read, from its ``Accept`` headers and its ``User-Agent``.

Engines announce the formats they parse in ``Accept`` (Docker 1.10+ one header per type,
containerd one comma-separated header), but a few announce more than they can read, and the
oldest announce nothing.  ``classify`` turns the headers into ``ClientCaps``, the same for a
HEAD and a GET carrying the same headers, so both get the same answer:

- every ``Accept`` instance is split on ``,``; parameters (``;q=…``) are cut; ``*`` and ``*/*``
  carry no information (containerd ends its list with one) and are ignored;
- ``docker/19.03.0`` to ``19.03.4`` announce OCI manifests but reject them (moby#39727): not OCI;
- Docker before 23.0 and containerd before 1.5 cannot unpack zstd layers, nor can a client that
  reads neither OCI manifests nor nothing newer than Docker's formats (no Docker media type
  exists for zstd).

Facts and sources: the client matrix in the project's old-engines notes (moby, containerd).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.oci.mediatypes import DOCKER_MANIFEST, OCI_MANIFEST, ClientCaps

_PRODUCT = re.compile(r"(?:^|\s)(docker|containerd)/v?(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)
WILDCARDS = frozenset({"*", "*/*"})


@dataclass(frozen=True)
class Engine:
    """The engine a ``User-Agent`` names (``docker/20.10.24+dfsg1 go/…`` -> docker 20.10.24)."""

    product: str
    version: tuple[int, int, int]

    def __str__(self) -> str:
        return f"{self.product}/{'.'.join(map(str, self.version))}"


_OS = re.compile(r"(?:^|\s)os/([A-Za-z0-9_.-]+)")
_ARCH = re.compile(r"(?:^|\s)arch/([A-Za-z0-9_.-]+)")


def user_agent_platform(user_agent: str) -> tuple[str, str] | None:
    """``(os, architecture)`` as a Docker engine names them (``… os/linux arch/arm64 …``, since
    Docker 1.6; no variant), raw; ``None`` when the ``User-Agent`` names no platform."""
    found_os, found_arch = _OS.search(user_agent or ""), _ARCH.search(user_agent or "")
    if found_os is None or found_arch is None:
        return None
    return found_os[1], found_arch[1]


_TOKEN = re.compile(r"(?:^|[\s(;])([A-Za-z0-9][A-Za-z0-9_.-]*)/")


def products(user_agent: str) -> frozenset[str]:
    """The product names of a ``User-Agent`` (``cosign/v2.2.3 (linux; amd64) go-containerregistry/v0.19``
    -> cosign, go-containerregistry), lower case: what index-tool patterns are matched against."""
    return frozenset(m.lower() for m in _TOKEN.findall(user_agent or ""))


def index_tool(user_agent: str, names: Iterable[str]) -> str:
    """The first of ``names`` that is a product of ``user_agent`` (a tool that works on the index
    as published: signature checks, copies, builds for other platforms), or ``""``."""
    found = products(user_agent)
    return next((n for n in names if n.lower() in found), "")


def parse_user_agent(user_agent: str) -> Engine | None:
    m = _PRODUCT.search(user_agent or "")
    if m is None:
        return None
    return Engine(m[1].lower(), (int(m[2]), int(m[3]), int(m[4] or 0)))


def accepted_types(values: Iterable[str]) -> frozenset[str]:
    """Media types named in ``Accept`` headers: comma-split, parameters cut, wildcards dropped."""
    types = set()
    for value in values:
        for part in value.split(","):
            media = part.split(";", 1)[0].strip().lower()
            if media and media not in WILDCARDS:
                types.add(media)
    return frozenset(types)


def classify(accept: Iterable[str], user_agent: str = "") -> ClientCaps:
    """What this client can read, from every ``Accept`` header instance and its ``User-Agent``."""
    accepts = accepted_types(accept)
    engine = parse_user_agent(user_agent)
    vetoed: frozenset[str] = frozenset()
    if engine is not None and engine.product == "docker" and (19, 3, 0) <= engine.version <= (19, 3, 4):
        vetoed = frozenset({OCI_MANIFEST})  # its schema 2 parser rejects OCI manifests (moby#39727)
    zstd = OCI_MANIFEST in accepts - vetoed
    if engine is not None:
        oldest = (23, 0, 0) if engine.product == "docker" else (1, 5, 0)
        zstd = zstd and engine.version >= oldest
    return ClientCaps(accepts=accepts - vetoed, zstd=zstd, engine=str(engine) if engine else "")


def client_class(caps: ClientCaps) -> str:
    """A short name for logs and metrics: ``oci``, ``schema2``, ``schema1`` (the formats it reads)."""
    if OCI_MANIFEST in caps.accepts:
        return "oci"
    if DOCKER_MANIFEST in caps.accepts:
        return "schema2"
    return "schema1"
