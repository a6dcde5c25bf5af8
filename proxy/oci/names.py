"""The distribution-spec grammar for names, tags and digests, checked before any I/O.

Nothing from a request reaches the disk or the upstream unless it matched here: a name is
lower-case components joined by ``/``, a tag is at most 128 word characters, a digest is
``sha256:<64 hex>`` or ``sha512:<128 hex>``.  None of them can contain ``..``, ``%`` or a NUL, so
a checked value can never name a path outside the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.errors import InvalidDigest, InvalidName, InvalidTag

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_SHAPE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}
MAX_NAME = 255

DOCKER_HUB = "docker.io"
DOCKER_HUB_URL = "https://registry-1.docker.io"
DOCKER_HUB_ALIASES = (DOCKER_HUB, "index.docker.io", "registry-1.docker.io")
"""The names Docker Hub goes by; its one-component names are ``library/<name>`` there."""


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME.match(name):
        raise InvalidName(f"invalid repository name: {name_problem(name)}", {"name": name[:300]})
    return name


_ONE_COMPONENT = re.compile(rf"^{_COMPONENT}$")


def name_problem(name: str) -> str:
    """Which part of a repository name breaks the grammar, and how (for the error's message)."""
    if len(name) > MAX_NAME:
        return f"{len(name)} characters, more than {MAX_NAME}"
    for part in name.split("/"):
        if not part:
            return "an empty path component (a leading, trailing or doubled '/')"
        if _ONE_COMPONENT.match(part):
            continue
        bad = sorted({c for c in part if not (c.isascii() and (c.isalnum() or c in "._-"))})
        if bad:
            return f"component {part[:60]!r} has {' '.join(repr(c) for c in bad)} (allowed: a-z 0-9 . _ -)"
        if part != part.lower():
            return f"component {part[:60]!r} has upper-case letters (names are lower-case)"
        return f"component {part[:60]!r} starts, ends or joins with a separator ('.', '_', '-' go between letters)"
    return "not a repository name"


def check_tag(tag: str) -> str:
    if not TAG.match(tag):
        raise InvalidTag("invalid tag", {"tag": tag[:300]})
    return tag


def check_digest(digest: str) -> str:
    """A digest in a supported algorithm, else ``InvalidDigest``."""
    if len(digest) > 200 or not DIGEST_SHAPE.match(digest):
        raise InvalidDigest("invalid digest", {"digest": digest[:300]})
    algorithm, _, encoded = digest.partition(":")
    pattern = _ENCODED.get(algorithm)
    if pattern is None:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}", {"digest": digest})
    if not pattern.match(encoded):
        raise InvalidDigest(f"invalid {algorithm} digest", {"digest": digest})
    return digest


def is_digest(reference: str) -> bool:
    return ":" in reference


@dataclass(frozen=True)
class ImageRef:
    """A user's image reference (``alpine``, ``ghcr.io/o/r:tag``, ``name@sha256:...``)."""

    registry: str
    name: str
    reference: str
    typed: str = ""
    """The repository as the user typed it, without a registry (``x`` for ``x:1``); empty when
    the reference named its registry (``ghcr.io/o/r``): a mirror routes a name without one to
    its default upstream, as it routes a pull of ``localhost:5000/<typed>``."""

    @property
    def explicit(self) -> bool:
        """The reference named its registry."""
        return not self.typed

    @classmethod
    def parse(cls, text: str, default_registry: str = DOCKER_HUB) -> ImageRef:
        rest, at, digest = text.partition("@")
        reference = ""
        if at:
            reference = check_digest(digest)
        head, _, last = rest.rpartition("/")
        name_part, colon, tag = last.partition(":")
        if colon:
            reference = reference or check_tag(tag)
        path = f"{head}/{name_part}" if head else name_part
        first, slash, remainder = path.partition("/")
        typed = ""
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, name = first, remainder
        else:
            registry, name, typed = default_registry, path, check_name(path)
        if registry in DOCKER_HUB_ALIASES and "/" not in name:
            name = f"library/{name}"
        return cls(registry, check_name(name), reference or "latest", typed)
