"""The node check's canary, pure: a valid multi-platform image per nonce that the resolver reads
like any index, and the book of open checks (single use, expiry, a bound)."""

from __future__ import annotations

import gzip
import json
import tarfile
from io import BytesIO

import pytest

from hostinfo import HostProfile, Platform
from proxy.oci.digests import digest_of
from proxy.oci.mediatypes import ClientCaps
from proxy.oci.resolve import Decision, resolve
from proxy.pull.canary import PLATFORMS, Checks, Sighting, build, nonce_of

NONCE = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "nonce"),
    [
        (f"platproxy-check/{NONCE}", NONCE),
        (f"docker.io/platproxy-check/{NONCE}", NONCE),  # a path-prefix route
        (f"library/platproxy-check/{NONCE}", NONCE),
        (f"platproxy-check/{NONCE.upper()}", None),
        ("platproxy-check/short", None),
        (f"someone/{NONCE}", None),
        (f"platproxy-check/{NONCE}/more", None),
    ],
)
def test_the_reserved_name(name: str, nonce: str | None) -> None:
    assert nonce_of(name) == nonce


def test_the_canary_is_a_real_index_whose_children_resolve_and_verify() -> None:
    image = build(NONCE, "linux/amd64/v3")
    index = json.loads(image.index)
    platforms = ["/".join(e["platform"][k] for k in ("os", "architecture", "variant") if k in e["platform"])
                 for e in index["manifests"]]  # fmt: skip
    assert platforms == [*PLATFORMS, "linux/amd64/v3"]
    for entry in index["manifests"]:
        manifest = image.manifests[entry["digest"]]
        assert digest_of(manifest) == entry["digest"] and len(manifest) == entry["size"]
        doc = json.loads(manifest)
        config = image.blobs[doc["config"]["digest"]]
        assert json.loads(config)["architecture"] == entry["platform"]["architecture"]
        assert json.loads(config)["config"]["Labels"] == {"org.platproxy.check": NONCE}  # a new config per nonce
        layer = image.blobs[doc["layers"][0]["digest"]]
        with tarfile.open(fileobj=BytesIO(gzip.decompress(layer))) as tar:
            assert tar.getmembers() == []
    assert build(NONCE) == build(NONCE)  # reproducible
    assert build(NONCE).blobs.keys() != build("f" * 32).blobs.keys()
    v3 = HostProfile(platform=Platform.parse("linux/amd64/v3"))
    decision = resolve(image.index, v3, ClientCaps())
    assert isinstance(decision, Decision) and decision.chosen is not None
    assert str(decision.chosen.platform) == "linux/amd64/v3"


def test_checks_are_single_use_expire_and_are_bounded() -> None:
    now = [1000.0]
    checks = Checks(ttl=60, limit=3, clock=lambda: now[0])
    first = checks.issue("192.0.2.1")
    checks.seen(first, Sighting(now[0], "192.0.2.1", "docker/20.10", "", "linux/arm/v7 (node)", "manifest", "latest",
                                200))  # fmt: skip
    assert checks.get(first.nonce) is first
    assert checks.take(first.nonce) is first and checks.take(first.nonce) is None  # read once
    old = checks.issue("192.0.2.1")
    now[0] += 61
    assert checks.get(old.nonce) is None  # expired
    opened = [checks.issue("192.0.2.1") for _ in range(4)]
    assert checks.get(opened[0].nonce) is None and all(checks.get(c.nonce) for c in opened[1:])  # the oldest went
