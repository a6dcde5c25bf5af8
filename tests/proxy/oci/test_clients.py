"""Client classification (pure): what each engine generation reads, from the headers it really
sends (the client matrix of the old-engines notes; REAL-CLIENTS for the engines run here)."""

from __future__ import annotations

import pytest

from proxy.oci.clients import classify, client_class, parse_user_agent
from proxy.oci.convert import Form, plan
from proxy.oci.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
)

D10 = [DOCKER_SCHEMA1_SIGNED, "application/json", DOCKER_MANIFEST, DOCKER_LIST]  # one header each, 1.10-18.03
D18 = [*D10, OCI_MANIFEST, OCI_INDEX]  # 18.06 and later
CONTAINERD = [", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*"])]


def ua(version: str) -> str:
    return f"docker/{version} go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/amd64"


# (what, Accept header instances, User-Agent, client class, zstd)
ENGINES = [
    ("Docker 1.6 (no Accept)", [], ua("1.6.2"), "schema1", False),
    ("Docker 1.9", [], ua("1.9.1"), "schema1", False),
    ("Docker 1.12", D10, ua("1.12.6"), "schema2", False),
    ("Docker 17.09", D10[::-1], ua("17.09.1-ce"), "schema2", False),
    ("Docker 19.03.2 (rejects OCI, moby#39727)", D18, ua("19.03.2"), "schema2", False),
    ("Docker 19.03.12", D18, ua("19.03.12"), "oci", False),
    ("Docker 20.10 (Debian)", D18, ua("20.10.24+dfsg1"), "oci", False),
    ("Docker 24", D18, ua("24.0.7"), "oci", True),
    ("containerd 1.2 (HEAD only, ends in *)", CONTAINERD, "containerd/1.2.0", "oci", False),
    ("containerd 1.4", CONTAINERD, "containerd/v1.4.3", "oci", False),
    ("containerd 1.6", [CONTAINERD[0] + "/*"], "containerd/1.6.20~ds1", "oci", True),
    ("skopeo", [f"{OCI_MANIFEST}, {DOCKER_MANIFEST}, {DOCKER_SCHEMA1}"], "skopeo/1.9.3", "oci", True),
    ("application/json only", ["application/json"], "", "schema1", False),
    ("*/* only (curl)", ["*/*"], "curl/7.88.1", "schema1", False),
    ("q parameters, odd case", [f"{DOCKER_MANIFEST.upper()}; q=0.5", "text/html;q=0.1"], "", "schema2", False),
    ("unknown types only", ["application/x-whatever, image/png"], "", "schema1", False),
]


@pytest.mark.parametrize(("what", "accept", "agent", "kind", "zstd"), ENGINES, ids=[e[0] for e in ENGINES])
def test_engines_are_classified_from_their_real_headers(what: str, accept: list[str], agent: str, kind: str,
                                                        zstd: bool) -> None:  # fmt: skip
    caps = classify(accept, agent)
    assert (client_class(caps), caps.zstd) == (kind, zstd)
    assert "*" not in caps.accepts and "*/*" not in caps.accepts
    assert classify(accept, agent) == caps  # a HEAD and a GET with these headers get the same answer


def test_user_agents() -> None:
    assert str(parse_user_agent(ua("20.10.24+dfsg1"))) == "docker/20.10.24"
    assert str(parse_user_agent("containerd/v1.4.3")) == "containerd/1.4.3"
    assert parse_user_agent("skopeo/1.9.3") is None
    assert parse_user_agent("") is None
    assert parse_user_agent("mydocker/1.2.3") is None  # a product name, not a substring


PLANS = [
    (OCI_MANIFEST, "Docker 24", Form.AS_IS),
    (OCI_MANIFEST, "Docker 17.09", Form.SCHEMA2),
    (OCI_MANIFEST, "Docker 19.03.2 (rejects OCI, moby#39727)", Form.SCHEMA2),
    (OCI_MANIFEST, "Docker 1.9", Form.SCHEMA1),
    (OCI_MANIFEST, "application/json only", Form.SCHEMA1),
    (DOCKER_MANIFEST, "Docker 17.09", Form.AS_IS),
    (DOCKER_MANIFEST, "Docker 1.6 (no Accept)", Form.SCHEMA1),
    (DOCKER_SCHEMA1_SIGNED, "Docker 24", Form.AS_IS),  # upstream schema 1 passes through untouched
    (DOCKER_SCHEMA1_SIGNED, "Docker 1.9", Form.AS_IS),
    (DOCKER_SCHEMA1, "containerd 1.6", Form.AS_IS),
]


@pytest.mark.parametrize(("media_type", "engine", "form"), PLANS, ids=[f"{p[0].split('.')[-1]}-{p[1]}" for p in PLANS])
def test_the_form_each_engine_gets(media_type: str, engine: str, form: Form) -> None:
    what = {e[0]: e for e in ENGINES}[engine]
    assert plan(media_type, classify(what[1], what[2])) is form


def test_docker_schema2_is_never_turned_into_oci() -> None:
    oci_only = classify([OCI_MANIFEST, OCI_INDEX])
    assert plan(DOCKER_MANIFEST, oci_only) is Form.AS_IS
