"""OCI -> Docker schema 2 (media types only), schema 1 built as Distribution built it, and the
libtrust signatures Docker 1.6-1.9 verify.  Pure functions over real image bytes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.oci import jws
from proxy.oci.convert import DOCKER_FOREIGN_GZIP, DOCKER_LAYER_GZIP, NotConvertible, to_schema2
from proxy.oci.digests import manifest_digest, matches
from proxy.oci.mediatypes import DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_MANIFEST
from proxy.oci.schema1 import EMPTY_TAR, EMPTY_TAR_DIGEST, build_payload
from tests.ocibuild import Blob, gzip_layer, image, zstd_layer

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def oci_with(**extra: object) -> bytes:
    img = image({"architecture": "arm64", "os": "linux"})
    doc = json.loads(img.manifest.data) | extra
    return json.dumps(doc).encode()


def test_schema2_keeps_the_config_and_layers_and_drops_oci_only_fields() -> None:
    img = image({"architecture": "arm64", "os": "linux"}, [gzip_layer({"a": b"1"}), gzip_layer({"b": b"2"})])
    doc = json.loads(img.manifest.data)
    doc["annotations"] = {"org.opencontainers.image.created": "2024"}
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 1}
    doc["layers"][0]["annotations"] = {"x": "y"}
    converted = json.loads(to_schema2(json.dumps(doc).encode()))
    assert converted["mediaType"] == DOCKER_MANIFEST and converted["schemaVersion"] == 2
    assert converted["config"] == {"mediaType": DOCKER_CONFIG, "size": img.config.size, "digest": img.config.digest}
    assert [(x["digest"], x["size"]) for x in converted["layers"]] == [(x.digest, x.size) for x in img.layers]
    assert {x["mediaType"] for x in converted["layers"]} == {DOCKER_LAYER_GZIP}
    assert set(converted) == {"schemaVersion", "mediaType", "config", "layers"}
    assert "annotations" not in converted["layers"][0]
    assert to_schema2(json.dumps(doc).encode()) == to_schema2(json.dumps(doc).encode())  # deterministic


def test_foreign_layers_keep_their_urls() -> None:
    img = image({"architecture": "amd64", "os": "windows"})
    doc = json.loads(img.manifest.data)
    doc["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    doc["layers"][0]["urls"] = ["https://mcr.microsoft.com/x"]
    layer = json.loads(to_schema2(json.dumps(doc).encode()))["layers"][0]
    assert layer["mediaType"] == DOCKER_FOREIGN_GZIP and layer["urls"] == ["https://mcr.microsoft.com/x"]


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        (oci_with(artifactType="application/vnd.cncf.helm.chart"), "artifact"),
        (
            oci_with(
                config={
                    "mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "digest": "sha256:" + "1" * 64,
                    "size": 2,
                }
            ),
            "artifact",
        ),
        (image({"architecture": "amd64", "os": "linux"}, [zstd_layer({"a": b"1"})]).manifest.data, "zstd"),
        (
            oci_with(
                layers=[
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                        "digest": "sha256:" + "2" * 64,
                        "size": 3,
                    }
                ]
            ),
            "encrypted",
        ),
        (
            oci_with(layers=[{"mediaType": "application/x-unknown", "digest": "sha256:" + "2" * 64, "size": 3}]),
            "no Docker schema 2",
        ),
        (
            oci_with(layers=[{"mediaType": DOCKER_LAYER_GZIP, "digest": "sha256:" + "2" * 64, "size": "3"}]),
            "no valid size",
        ),
        (b"[]", "not an image manifest"),
        (b"{not json", "not JSON"),
    ],
    ids=["artifactType", "artifact config", "zstd", "encrypted", "unknown layer", "bad size", "list", "garbage"],
)
def test_what_has_no_docker_form_says_why(manifest: bytes, says: str) -> None:
    with pytest.raises(NotConvertible, match=says):
        to_schema2(manifest)


# -- schema 1 --------------------------------------------------------------------------------------


def schema2_with_history(history: list[dict[str, object]] | None, layers: int = 2) -> tuple[bytes, Blob]:
    built = [gzip_layer({f"f{i}": str(i).encode()}) for i in range(layers)]
    img = image({"architecture": "arm", "os": "linux", "variant": "v7"}, built, history=history)
    return to_schema2(img.manifest.data), img.config


def test_schema1_follows_distributions_id_scheme() -> None:
    history = [{"created_by": "ADD a"}, {"created_by": "ENV x=1", "empty_layer": True}, {"created_by": "RUN b"}]
    schema2, config = schema2_with_history(history)
    payload = build_payload(schema2, config.data, "library/x", "1")
    doc = json.loads(payload)
    assert (doc["schemaVersion"], doc["name"], doc["tag"], doc["architecture"]) == (1, "library/x", "1", "arm")
    layers = [x["digest"] for x in json.loads(schema2)["layers"]]
    assert [f["blobSum"] for f in doc["fsLayers"]] == [layers[1], EMPTY_TAR_DIGEST, layers[0]]  # newest first
    entries = [json.loads(h["v1Compatibility"]) for h in doc["history"]]
    base, empty, top = entries[2], entries[1], entries[0]
    assert base["id"] == hashlib.sha256(f"{layers[0][7:]} ".encode()).hexdigest() and "parent" not in base
    assert empty["id"] == hashlib.sha256(f"{EMPTY_TAR_DIGEST[7:]} {base['id']}".encode()).hexdigest()
    assert empty["parent"] == base["id"] and empty["throwaway"] is True
    assert top["parent"] == empty["id"] and top["architecture"] == "arm" and "rootfs" not in top
    assert top["id"] == hashlib.sha256(f"{layers[1][7:]} {empty['id']} ".encode() + config.data).hexdigest()
    assert base["container_config"] == {"Cmd": ["ADD a"]}
    assert payload.endswith(b"]\n}") and b'\n   "fsLayers": [' in payload  # MarshalIndent, 3 spaces
    assert hashlib.sha256(EMPTY_TAR).hexdigest() == EMPTY_TAR_DIGEST[7:]


@pytest.mark.parametrize("history", [None, [None], [{"created_by": "only one"}]], ids=["empty", "missing", "short"])
def test_schema1_synthesizes_history_when_the_config_has_none_usable(history: list[dict[str, object]] | None) -> None:
    schema2, config = schema2_with_history([] if history is None else history, layers=2)
    doc = json.loads(build_payload(schema2, config.data, "library/x", "1"))
    assert len(doc["fsLayers"]) == 2 and EMPTY_TAR_DIGEST not in str(doc["fsLayers"])
    ids = [json.loads(h["v1Compatibility"]) for h in doc["history"]]
    assert ids[0]["parent"] == ids[1]["id"] and "parent" not in ids[1]


def test_schema1_needs_a_name_and_a_json_config() -> None:
    schema2, config = schema2_with_history(None)
    with pytest.raises(NotConvertible, match="name"):
        build_payload(schema2, config.data, "", "1")
    with pytest.raises(NotConvertible, match="config"):
        build_payload(schema2, b"nope", "library/x", "1")


def test_signatures_verify_and_leave_the_digest_alone() -> None:
    schema2, config = schema2_with_history(None)
    payload = build_payload(schema2, config.data, "library/x", "1")
    key = ec.generate_private_key(ec.SECP256R1())
    first, second = jws.sign(payload, key, NOW), jws.sign(payload, key, NOW)
    assert first != second  # ECDSA nonces differ: the body changes, the digest does not
    assert jws.payload(first) == jws.payload(second) == payload
    assert manifest_digest(first, DOCKER_SCHEMA1_SIGNED) == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert matches(manifest_digest(first, DOCKER_SCHEMA1_SIGNED), first, DOCKER_SCHEMA1_SIGNED)
    assert not matches(manifest_digest(first, DOCKER_SCHEMA1_SIGNED), first)  # as a plain blob it would not
    kid = jws.key_id(key.public_key())
    assert jws.verify(first) == [kid] and len(kid.split(":")) == 12 and all(len(g) == 4 for g in kid.split(":"))
    protected = json.loads(jws.b64url_decode(json.loads(first)["signatures"][0]["protected"]))
    assert protected == {"formatLength": len(payload) - 2, "formatTail": "Cn0", "time": "2026-11-30T12:00:00Z"}


def test_a_tampered_signature_or_kid_is_refused() -> None:
    schema2, config = schema2_with_history(None)
    body = jws.sign(build_payload(schema2, config.data, "library/x", "1"), ec.generate_private_key(ec.SECP256R1()), NOW)
    other = jws.key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    doc = json.loads(body)
    kid = doc["signatures"][0]["header"]["jwk"]["kid"]
    with pytest.raises(jws.InvalidSignature, match="kid"):
        jws.verify(body.replace(kid.encode(), other.encode()))
    with pytest.raises(jws.InvalidSignature, match="does not verify"):
        jws.verify(body.replace(b'"tag": "1"', b'"tag": "2"'))
    with pytest.raises(jws.InvalidSignature):
        jws.payload(b'{"signatures": [{"protected": "!!"}]}')
