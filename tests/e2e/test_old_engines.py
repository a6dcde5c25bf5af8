"""Old engines, end to end: each engine generation's requests (its real Accept headers, its
User-Agent, HEAD or GET as it does them) replayed against platproxy in front of a real
Distribution 2.8; every answer is a manifest that engine reads, for this host's platform, with
every blob it names served and verified.  The golden test compares platproxy's schema 1 with
the one Distribution itself makes for the same image."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.oci import jws
from proxy.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
)
from proxy.oci.schema1 import EMPTY_TAR_DIGEST
from tests import indexes
from tests.conftest import skopeo_copy
from tests.indexes import Case
from tests.ocibuild import DOCKER_LAYER, Blob, gzip_layer, image, index, zstd_layer
from tests.registry import Platproxy, Registry, push_case, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
PLATFORM = "linux/amd64"

D10 = [DOCKER_SCHEMA1_SIGNED, "application/json", DOCKER_MANIFEST, DOCKER_LIST]
D18 = [DOCKER_LIST, OCI_INDEX, DOCKER_SCHEMA1_SIGNED, "application/json", OCI_MANIFEST, DOCKER_MANIFEST]
CONTAINERD_12 = [f"{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX}, *"]


def ua(version: str) -> str:
    return f"docker/{version} go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/amd64"


# engine: (Accept header instances, User-Agent, how it asks for a tag, what it gets for OCI, for Docker schema 2)
ENGINES: dict[str, tuple[list[str], str, str, str, str]] = {
    "docker-1.9": ([], ua("1.9.1"), "GET", DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1_SIGNED),
    "docker-1.12": (D10, ua("1.12.6"), "GET", DOCKER_MANIFEST, DOCKER_MANIFEST),
    "docker-17.09": (D10[::-1], ua("17.09.1-ce"), "GET", DOCKER_MANIFEST, DOCKER_MANIFEST),
    "docker-19.03.2": (D18, ua("19.03.2"), "GET", DOCKER_MANIFEST, DOCKER_MANIFEST),
    "docker-19.03.12": (D18, ua("19.03.12"), "GET", OCI_MANIFEST, DOCKER_MANIFEST),
    "docker-20.10": (D18, ua("20.10.24+dfsg1"), "HEAD", OCI_MANIFEST, DOCKER_MANIFEST),
    "containerd-1.2": (CONTAINERD_12, "containerd/1.2.0", "HEAD", OCI_MANIFEST, DOCKER_MANIFEST),
}
MODERN = ENGINES["docker-20.10"]


def golden_image() -> Any:
    """A Docker schema 2 image with the history a real build leaves: empty layers, comments,
    an author, nanosecond and offset times, shell ``&&`` and ``<>`` that Go escapes."""
    history = [
        {"created": "2024-05-22T18:18:12.052034407Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created": "2024-05-22T18:18:12.500Z", "created_by": 'CMD ["/bin/sh"]', "empty_layer": True},
        {
            "created": "2024-06-01T10:00:00+02:00",
            "created_by": "RUN apk add curl && echo '<ok>'",
            "comment": "buildkit.dockerfile.v0",
            "author": "Zoë <z@example.org>",
        },
        {"created": "2024-06-01T10:00:01Z", "created_by": "ENV A=b", "empty_layer": True},
    ]
    layers = [gzip_layer({"etc/a": b"1"}, DOCKER_LAYER), gzip_layer({"etc/b": b"2"}, DOCKER_LAYER)]
    extra = {"created": "2024-06-01T10:00:01Z", "docker_version": "24.0.5",
             "config": {"Env": ["PATH=/usr/bin", "X=<a&b>"], "Cmd": ["/bin/sh"], "Labels": {"é": "ü"}}}  # fmt: skip
    return image({"architecture": "amd64", "os": "linux"}, layers, docker=True, history=history, config_extra=extra)


def single(img: Any) -> Case:
    return Case(img.manifest, [img.manifest, *img.blobs()], {"image": img})


def zstd_only() -> Case:
    amd64 = image({"architecture": "amd64", "os": "linux"}, [zstd_layer({"etc/z": b"zstd"})])
    arm64 = image({"architecture": "arm64", "os": "linux"})
    return Case(index([amd64, arm64]), [b for i in (amd64, arm64) for b in (i.manifest, *i.blobs())],
                {"linux/amd64": amd64, "linux/arm64": arm64})  # fmt: skip


def odd_images() -> dict[str, Case]:
    helm_config = Blob(b'{"name":"chart"}', "application/vnd.cncf.helm.config.v1+json")
    chart = Blob(b"chart-bytes", "application/vnd.cncf.helm.chart.content.v1.tar+gzip")
    artifact_doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.helm.chart",
                    "config": helm_config.descriptor(), "layers": [chart.descriptor()]}  # fmt: skip
    artifact = Blob(json.dumps(artifact_doc).encode(), OCI_MANIFEST)
    secret = Blob(b"ciphertext", "application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
    encrypted = image({"architecture": "amd64", "os": "linux"}, [secret])
    bare = image({"architecture": "amd64", "os": "linux"}, [gzip_layer({"a": b"1"}), gzip_layer({"b": b"2"})],
                 history=[None])  # fmt: skip
    return {
        "library/artifact:1": Case(artifact, [artifact, helm_config, chart]),
        "library/encrypted:1": single(encrypted),
        "library/nohistory:1": single(bare),
    }


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, dict[str, Case]]]:
    registry = Registry(tmp_path_factory.mktemp("old-registry"), schema1=True).start()
    cases = {
        "library/multi:1": indexes.alpine_with_attestations(),
        "library/winlin:1": indexes.windows_ltsc(),
        "library/nested:1": indexes.goauthentik_nested(),
        "library/golden:1": single(golden_image()),
        "library/zstdonly:1": zstd_only(),
        "library/twin:1": indexes.zstd_twin(),
        **odd_images(),
    }
    try:
        for ref, case in cases.items():
            push_case(registry, ref, case)
        # a schema 1 manifest in the upstream itself: the one Distribution makes for golden:1
        _, _, legacy = ask(registry.port, "GET", "/v2/library/golden/manifests/1", [], "")
        registry.push_manifest("library/golden", "legacy", Blob(legacy, DOCKER_SCHEMA1_SIGNED))
        yield registry, cases
    finally:
        registry.stop()


def ask(port: int, method: str, path: str, accept: list[str], agent: str) -> tuple[int, dict[str, str], bytes]:
    """A request with one ``Accept`` header per entry, as Docker sends them."""
    return request(
        port, method, path, headers=[*(("Accept", a) for a in accept), *([("User-Agent", agent)] * bool(agent))]
    )


def pull(port: int, repo: str, tag: str, engine: str) -> tuple[dict[str, str], bytes]:
    """What ``engine`` does for ``repo:tag``: HEAD or GET the tag, then GET by the digest; the
    other method agrees; returns the by-digest answer."""
    accept, agent, method, _, _ = ENGINES[engine]
    status, tagged, body = ask(port, method, f"/v2/{repo}/manifests/{tag}", accept, agent)
    assert status == 200, body
    other = ask(port, "GET" if method == "HEAD" else "HEAD", f"/v2/{repo}/manifests/{tag}", accept, agent)
    for h in ("docker-content-digest", "content-type", "content-length"):
        assert other[1][h] == tagged[h], h
    assert tagged["vary"] == "Accept, User-Agent, X-Platproxy-Resolve, X-Platproxy-Platform"
    digest = tagged["docker-content-digest"]
    status, headers, body = ask(port, "GET", f"/v2/{repo}/manifests/{digest}", accept, agent)
    assert status == 200 and headers["content-type"] == tagged["content-type"]
    assert int(tagged["content-length"]) == len(body)
    hashed = jws.payload(body) if headers["content-type"] == DOCKER_SCHEMA1_SIGNED else body
    assert "sha256:" + hashlib.sha256(hashed or b"").hexdigest() == digest
    return headers, body


def blobs_of(body: bytes, media_type: str) -> list[str]:
    doc = json.loads(body)
    if media_type == DOCKER_SCHEMA1_SIGNED:
        return [f["blobSum"] for f in doc["fsLayers"]]
    return [doc["config"]["digest"], *(x["digest"] for x in doc["layers"])]


def assert_blobs_served(port: int, repo: str, body: bytes, media_type: str) -> None:
    for digest in blobs_of(body, media_type):
        status, _, data = ask(port, "GET", f"/v2/{repo}/blobs/{digest}", [], "")
        assert status == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == digest, digest


@pytest.mark.parametrize("engine", list(ENGINES))
def test_each_engine_gets_a_manifest_it_reads(old: tuple[Registry, dict[str, Case]], platproxy: Start,
                                              engine: str) -> None:  # fmt: skip
    registry, cases = old
    proxy = platproxy(registry.url, PLATFORM)
    for repo, name, source_type in (
        ("library/multi", "linux/amd64", OCI_MANIFEST),
        ("library/winlin", "linux/amd64", DOCKER_MANIFEST),
        ("library/nested", "amd64", OCI_MANIFEST),
    ):
        chosen = cases[f"{repo}:1"].images[name]
        headers, body = pull(proxy.port, repo, "1", engine)
        expected = ENGINES[engine][3] if source_type == OCI_MANIFEST else ENGINES[engine][4]
        assert headers["content-type"] == expected, repo
        converted = headers["docker-content-digest"] != chosen.manifest.digest
        assert converted == (expected != source_type), repo
        assert_blobs_served(proxy.port, repo, body, expected)
        if expected == DOCKER_SCHEMA1_SIGNED:
            doc = json.loads(body)
            assert (doc["name"], doc["tag"], doc["architecture"]) == (repo, "1", "amd64")
            assert len(jws.verify(body)) == 1
        elif converted:  # schema 2 from OCI: the config is the original one, byte for byte
            config = json.loads(body)["config"]
            assert config["mediaType"] == DOCKER_CONFIG and config["digest"] == chosen.config.digest
            assert config["size"] == chosen.config.size


def test_golden_schema1_is_distributions_own(old: tuple[Registry, dict[str, Case]], platproxy: Start) -> None:
    """Distribution 2.8 converts schema 2 to schema 1 itself for an Accept-less tag request:
    platproxy's payload is byte for byte the same, so the digest, v1 IDs and parents are too."""
    registry, _ = old
    _, theirs_headers, theirs = ask(registry.port, "GET", "/v2/library/golden/manifests/1", [], "")
    assert theirs_headers["content-type"] == DOCKER_SCHEMA1_SIGNED
    proxy = platproxy(registry.url, PLATFORM)
    headers, ours = pull(proxy.port, "library/golden", "1", "docker-1.9")
    mine, reference = json.loads(ours), json.loads(theirs)
    for key in ("name", "tag", "architecture", "fsLayers", "history"):
        assert mine[key] == reference[key], key
    assert EMPTY_TAR_DIGEST in {f["blobSum"] for f in mine["fsLayers"]}  # throwaway entries
    assert jws.payload(ours) == jws.payload(theirs)
    assert headers["docker-content-digest"] == theirs_headers["docker-content-digest"]
    kid = mine["signatures"][0]["header"]["jwk"]["kid"]
    assert jws.verify(ours) == [kid]  # verify() recomputes the libtrust fingerprint of the key
    assert_blobs_served(proxy.port, "library/golden", ours, DOCKER_SCHEMA1_SIGNED)  # the empty tar included


def test_skopeo_reads_the_conversions_by_digest(old: tuple[Registry, dict[str, Case]], platproxy: Start,
                                                tmp_path: Path) -> None:  # fmt: skip
    registry, _ = old
    proxy = platproxy(registry.url, PLATFORM)
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo must be installed (scripts/test.sh installs it)"
    for repo, engine, media_type in (("library/multi", "docker-17.09", DOCKER_MANIFEST),
                                     ("library/golden", "docker-1.9", DOCKER_SCHEMA1_SIGNED)):  # fmt: skip
        headers, body = pull(proxy.port, repo, "1", engine)
        assert headers["content-type"] == media_type
        ref = f"{proxy.address}/{repo}@{headers['docker-content-digest']}"
        raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                             capture_output=True, timeout=120, check=False)  # fmt: skip
        assert raw.returncode == 0 and raw.stdout == body, raw.stderr
        copied = skopeo_copy(ref, tmp_path / repo.replace("/", "_"))
        assert copied.returncode == 0, copied.stderr
        assert (tmp_path / repo.replace("/", "_") / "manifest.json").read_bytes() == body


def test_conversions_survive_a_restart_and_a_lost_cache(old: tuple[Registry, dict[str, Case]], platproxy: Start,
                                                        tmp_path: Path) -> None:  # fmt: skip
    registry, _ = old
    first = platproxy(registry.url, PLATFORM, cache=tmp_path / "kept")
    before = {e: pull(first.port, "library/multi", "1", e) for e in ("docker-1.9", "docker-17.09")}
    first.stop()
    again = platproxy(registry.url, PLATFORM, cache=tmp_path / "kept")
    for engine, (headers, body) in before.items():
        kept_headers, kept = pull(again.port, "library/multi", "1", engine)
        assert (kept_headers["docker-content-digest"], kept) == (headers["docker-content-digest"], body)
    assert (tmp_path / "kept" / "schema1-signing-key.pem").stat().st_mode & 0o777 == 0o600
    fresh = platproxy(registry.url, PLATFORM, cache=tmp_path / "lost")
    for engine, (headers, _) in before.items():
        regenerated = pull(fresh.port, "library/multi", "1", engine)[0]
        assert regenerated["docker-content-digest"] == headers["docker-content-digest"]  # deterministic


def test_zstd_reaches_only_engines_that_unpack_it(old: tuple[Registry, dict[str, Case]], platproxy: Start) -> None:
    registry, cases = old
    proxy = platproxy(registry.url, PLATFORM)
    accept, agent, *_ = ENGINES["docker-20.10"]
    status, _, body = ask(proxy.port, "GET", "/v2/library/zstdonly/manifests/1", accept, agent)
    error = json.loads(body)["errors"][0]
    assert status == 404 and error["code"] == "MANIFEST_UNKNOWN" and "zstd" in error["message"]
    assert error["detail"]["engine"] == "docker/20.10.24" and error["detail"]["platform"] == "linux/amd64/v1"
    status, headers, _ = ask(proxy.port, "GET", "/v2/library/zstdonly/manifests/1", D18, ua("24.0.7"))
    assert status == 200 and headers["docker-content-digest"] == cases["library/zstdonly:1"].digest_of("linux/amd64")
    headers, _ = pull(proxy.port, "library/twin", "1", "docker-20.10")
    assert headers["docker-content-digest"] == cases["library/twin:1"].digest_of("gzip")


def test_what_cannot_be_converted_gets_a_defined_answer(old: tuple[Registry, dict[str, Case]],
                                                        platproxy: Start) -> None:  # fmt: skip
    registry, _ = old
    proxy = platproxy(registry.url, PLATFORM)
    for repo, says in (("library/artifact", "artifact"), ("library/encrypted", "encrypted")):
        for engine in ("docker-17.09", "docker-1.9"):
            accept, agent, *_ = ENGINES[engine]
            status, _, body = ask(proxy.port, "GET", f"/v2/{repo}/manifests/1", accept, agent)
            error = json.loads(body)["errors"][0]
            assert status == 404 and error["code"] == "MANIFEST_UNKNOWN" and says in error["message"], body
        assert pull(proxy.port, repo, "1", "docker-20.10")[0]["content-type"] == OCI_MANIFEST  # OCI clients: as is
    headers, body = pull(proxy.port, "library/nohistory", "1", "docker-1.9")  # synthesized history
    assert len(json.loads(body)["fsLayers"]) == 2
    _, _, legacy = ask(registry.port, "GET", "/v2/library/golden/manifests/legacy", [DOCKER_SCHEMA1_SIGNED], "")
    served = set()
    for engine in ("docker-1.9", "docker-20.10", "docker-17.09"):  # upstream schema 1: untouched for everyone
        headers, body = pull(proxy.port, "library/golden", "legacy", engine)
        assert jws.payload(body) == jws.payload(legacy) and headers["content-type"] == DOCKER_SCHEMA1_SIGNED
        served.add(body)  # (Distribution signs again at every GET; platproxy keeps the bytes it verified)
    assert len(served) == 1
    for accept in (["application/x-unknown"], ["*/*"], ["application/json"]):
        status, headers, _ = ask(proxy.port, "GET", "/v2/library/multi/manifests/1", accept, "")
        assert status == 200 and headers["content-type"] == DOCKER_SCHEMA1_SIGNED
