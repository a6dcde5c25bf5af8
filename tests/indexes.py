"""The index cases of the test matrix, built from real bytes by ``ocibuild``.

Three are shaped after real public images: a Docker Official Image with BuildKit attestations
(library/alpine: eight platforms, one provenance manifest per image), a nested per-platform
index (ghcr.io/goauthentik/server: the top index points at one index per platform), and a
Windows image (a Docker Official Image's Windows tags: ltsc2019 and ltsc2022 entries beside
Linux ones in one Docker manifest list).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tests.ocibuild import Blob, Image, attestation, gzip_layer, image, index, sha256, zstd_layer

ALPINE_PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm", "os": "linux", "variant": "v6"},
    {"architecture": "arm", "os": "linux", "variant": "v7"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "386", "os": "linux"},
    {"architecture": "ppc64le", "os": "linux"},
    {"architecture": "riscv64", "os": "linux"},
    {"architecture": "s390x", "os": "linux"},
]


@dataclass
class Case:
    top: Blob
    blobs: list[Blob] = field(default_factory=list)
    images: dict[str, Image] = field(default_factory=dict)

    def contents(self) -> dict[str, bytes | None]:
        return {b.digest: b.data for b in self.blobs}

    def digest_of(self, name: str) -> str:
        return self.images[name].manifest.digest


def _case(
    entries: list[Image], named: dict[str, Image], *, docker: bool = False, extra: list[Blob] | None = None
) -> Case:
    top = index(list(entries), docker=docker)
    blobs = [b for img in entries for b in (img.manifest, *img.blobs())] + (extra or [])
    return Case(top, blobs, named)


def alpine_with_attestations() -> Case:
    entries: list[Image] = []
    named: dict[str, Image] = {}
    images = [image(p) for p in ALPINE_PLATFORMS]
    for p, img in zip(ALPINE_PLATFORMS, images, strict=True):
        named["/".join(p[k] for k in ("os", "architecture", "variant") if k in p)] = img
    entries += images
    for img in images:
        att = attestation(img)
        named[f"attestation:{img.manifest.digest}"] = att
        entries.append(att)
    return _case(entries, named)


def goauthentik_nested() -> Case:
    named: dict[str, Image] = {}
    inner: list[tuple[Blob, dict[str, str], dict[str, str]]] = []
    blobs: list[Blob] = []
    for p in ({"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}):
        img = image(p)
        att = attestation(img)
        nested = index([img, att])
        named[p["architecture"]] = img
        inner.append((nested, p, {}))
        blobs += [nested, img.manifest, *img.blobs(), att.manifest, *att.blobs()]
    return Case(index(inner), blobs, named)  # type: ignore[arg-type]


def windows_ltsc() -> Case:
    plats = {
        "linux/amd64": {"architecture": "amd64", "os": "linux"},
        "linux/arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "ltsc2019": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.6532"},
        "ltsc2022": {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2849"},
    }
    named = {k: image(p, docker=True) for k, p in plats.items()}
    return _case(list(named.values()), named, docker=True)


def no_platform() -> Case:
    """Entries without a platform: only their config says what they are."""
    named = {
        "arm64": image(None, config_platform={"architecture": "arm64", "os": "linux"}, label="arm64"),
        "amd64": image(None, config_platform={"architecture": "amd64", "os": "linux"}, label="amd64"),
    }
    return _case(list(named.values()), named)


def armv8_style() -> Case:
    """estesp/debian:jessie from the seed talk: arm64 labelled ``armv8``, Docker list."""
    plats = [
        {"architecture": "s390x", "os": "linux"},
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "ppc64le", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "armv8"},
    ]
    named = {p["architecture"]: image(p, docker=True) for p in plats}
    return _case(list(named.values()), named, docker=True)


def arm64_v8_and_unlabeled() -> Case:
    named = {
        "plain": image({"architecture": "arm64", "os": "linux"}, label="plain"),
        "v8": image({"architecture": "arm64", "os": "linux", "variant": "v8"}, label="v8"),
    }
    return _case(list(named.values()), named)


def amd64_levels() -> Case:
    """AlmaLinux-style: v2 and v3 builds plus an unlabeled (baseline) one."""
    named = {
        "unlabeled": image({"architecture": "amd64", "os": "linux"}, label="unlabeled"),
        "v2": image({"architecture": "amd64", "os": "linux", "variant": "v2"}),
        "v3": image({"architecture": "amd64", "os": "linux", "variant": "v3"}),
        "arm64": image({"architecture": "arm64", "os": "linux"}),
    }
    return _case(list(named.values()), named)


def zstd_twin() -> Case:
    """containers/image style: each platform twice, the zstd one annotated."""
    p = {"architecture": "amd64", "os": "linux"}
    files = {"etc/hello": b"twin"}
    named = {
        "zstd": image(p, [zstd_layer(files)], annotations={"io.github.containers.compression.zstd": "true"}),
        "gzip": image(p, [gzip_layer(files)]),
    }
    return _case(list(named.values()), named)


def nothing_fits() -> Case:
    named = {
        "s390x": image({"architecture": "s390x", "os": "linux"}),
        "ppc64le": image({"architecture": "ppc64le", "os": "linux"}),
    }
    return _case(list(named.values()), named)


def fresh_case(platforms: list[dict[str, str]], layer_mib: int = 4) -> Case:
    """A new multi-platform image (nothing of it cached anywhere yet): a shared base layer of
    random bytes and a small layer per platform."""
    base = gzip_layer({"opt/base.bin": os.urandom(layer_mib * 2**20)})
    named: dict[str, Image] = {}
    for p in platforms:
        spec = "/".join(p[k] for k in ("os", "architecture", "variant") if k in p)
        named[spec] = image(p, [base, gzip_layer({"etc/platform": spec.encode() + os.urandom(64)})])
    top = index(list(named.values()))
    return Case(top, [b for img in named.values() for b in (img.manifest, *img.blobs())], named)


def check_pulled(out: Path, case: Case, spec: str) -> None:
    """skopeo's ``dir:`` copy holds exactly the expected manifest and every blob intact."""
    manifest = (out / "manifest.json").read_bytes()
    assert sha256(manifest) == case.digest_of(spec)
    doc = json.loads(manifest)
    for d in [doc["config"], *doc["layers"]]:
        data = (out / d["digest"].split(":")[1]).read_bytes()
        assert sha256(data) == d["digest"] and len(data) == d["size"]
