"""Scale-out: several platproxy replicas on one bucket of a real S3 server (Ceph RGW).

The upstream is the real Distribution registry of the session; the clients are real skopeo
processes.  How replicas share one fill (leases) is in ``test_s3_leases``; a child platproxy
chained to a parent in ``test_parent``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_MANIFEST, UPSTREAM_ACCEPT
from tests.conftest import Seeded, skopeo_copy
from tests.indexes import check_pulled, fresh_case
from tests.ocibuild import Image, sha256
from tests.registry import Platproxy, config_args, push_case, request
from tests.rgw import Rgw, blob_key, bucket, landed, s3_args, s3_text
from tests.tokenserver import USERS, TokenUpstream, passthrough_config

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def pull_and_land(proxy: Platproxy, ref: str, dest: Path, server: Rgw, name: str, image: Image) -> None:
    """A skopeo pull through ``proxy``, then the image's blobs landed in the bucket."""
    done = skopeo_copy(f"{proxy.address}/{ref}", dest)
    assert done.returncode == 0, done.stderr
    landed(server, name, {blob_key(b.digest) for b in (image.config, *image.layers)})


@pytest.mark.parametrize("gateways", [1, 2], ids=["one-gateway", "two-gateways"])
def test_three_replicas_thirty_clients_each_blob_fetched_once(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path, gateways: int
) -> None:
    """With two gateways, the replicas are split across them (as behind a load balancer): the
    conditional writes that elect one fetcher are the cluster's, not one gateway's."""
    registry = seeded.registry
    # A 12 MiB base layer: with 5 MiB parts it is stored as a three-part multipart upload.
    case = fresh_case([{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}], 12)
    push_case(registry, "library/scaleout:1", case)
    name = bucket(rgw)
    replicas = [platproxy(registry.url, "linux/amd64", s3_args(tmp_path, rgw, name, 'part_size = "5MiB"', i % gateways))
                for i in range(3)]  # fmt: skip
    if gateways == 2:  # each replica says which gateway it uses
        assert f"store s3 {rgw.endpoints[1]}" in replicas[1].log() and rgw.endpoints[1] not in replicas[0].log()
    chosen = case.images["linux/amd64"]
    blobs = [chosen.config, *chosen.layers]
    before = {b.digest: registry.requests_for(f"/blobs/{b.digest}") for b in blobs}

    def pull(i: int) -> Path:
        out = tmp_path / f"client{i}"
        done = skopeo_copy(f"{replicas[i % 3].address}/library/scaleout:1", out)
        assert done.returncode == 0, done.stderr
        return out

    with ThreadPoolExecutor(30) as pool:
        outs = list(pool.map(pull, range(30)))
    for out in outs:
        check_pulled(out, case, "linux/amd64")
    fetched = {b.digest: registry.requests_for(f"/blobs/{b.digest}") - before[b.digest] for b in blobs}
    assert fetched == {b.digest: 1 for b in blobs}, fetched

    keys = landed(rgw, name, {blob_key(b.digest) for b in blobs})
    for b in blobs:  # one shared copy of each, complete; no lease left behind
        assert keys[blob_key(b.digest)] == b.size
    assert not [k for k in keys if "/leases/" in k]
    assert any("/tags/" in k for k in keys)
    # The other platform's blobs were never fetched or stored.
    other = case.images["linux/arm64"].layers[1]
    assert blob_key(other.digest) not in keys

    # Served from the bucket: a Range is passed through; HEAD gives the size.
    base = chosen.layers[0]
    status, headers, body = request(replicas[1].port, "GET", f"/v2/library/scaleout/blobs/{base.digest}",
                                    headers={"Range": "bytes=100-1099"})  # fmt: skip
    assert (status, body) == (206, base.data[100:1100])
    assert headers["content-range"] == f"bytes 100-1099/{base.size}"
    status, headers, _ = request(replicas[2].port, "HEAD", f"/v2/library/scaleout/blobs/{base.digest}")
    assert (status, int(headers["content-length"])) == (200, base.size)
    # An object removed from the bucket behind platproxy's back (a lifecycle rule) is filled again.
    rgw.call("delete_object", Bucket=name, Key=blob_key(base.digest))
    before_refill = registry.requests_for(f"/blobs/{base.digest}")
    status, _, body = request(replicas[0].port, "GET", f"/v2/library/scaleout/blobs/{base.digest}")
    assert status == 200 and sha256(body) == base.digest
    assert registry.requests_for(f"/blobs/{base.digest}") == before_refill + 1
    metrics = "".join(request(r.port, "GET", "/metrics")[2].decode() for r in replicas)
    assert 'platproxy_store_requests_total{operation="complete_multipart_upload",outcome="ok"} 1.0' in metrics
    assert 'platproxy_lease_total{outcome="held"}' in metrics  # some replicas did wait on another


def test_a_second_replica_answers_a_tag_from_the_shared_record(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    case = fresh_case([{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}], 1)
    push_case(seeded.registry, "library/sharedtag:1", case)
    name = bucket(rgw)
    first = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name))
    pull_and_land(first, "library/sharedtag:1", tmp_path / "first", rgw, name, case.images["linux/amd64"])
    asked = seeded.registry.requests_for("/v2/library/sharedtag/manifests/", "GET")
    second = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name))
    done = skopeo_copy(f"{second.address}/library/sharedtag:1", tmp_path / "second")
    assert done.returncode == 0, done.stderr
    check_pulled(tmp_path / "second", case, "linux/amd64")
    assert seeded.registry.requests_for("/v2/library/sharedtag/manifests/", "GET") == asked  # nothing asked again
    assert seeded.registry.requests_for("/v2/library/sharedtag/manifests/1", "HEAD") == 0  # record still fresh
    # A replica resolving for another platform keeps its own record and gets its own answer.
    third = platproxy(seeded.registry.url, "linux/arm64", s3_args(tmp_path, rgw, name))
    done = skopeo_copy(f"{third.address}/library/sharedtag:1", tmp_path / "third")
    assert done.returncode == 0, done.stderr
    check_pulled(tmp_path / "third", case, "linux/arm64")


def test_presigned_redirect_serves_from_the_bucket(seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path) -> None:
    case = fresh_case([{"architecture": "amd64", "os": "linux"}], layer_mib=1)
    push_case(seeded.registry, "library/redirected:1", case)
    name = bucket(rgw)
    proxy = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name, "redirect = true"))
    pull_and_land(proxy, "library/redirected:1", tmp_path / "first", rgw, name, case.images["linux/amd64"])
    layer = case.images["linux/amd64"].layers[0]
    status, headers, _ = request(proxy.port, "GET", f"/v2/library/redirected/blobs/{layer.digest}")
    assert status == 307 and headers["location"].startswith(rgw.endpoint)
    with urllib.request.urlopen(headers["location"], timeout=10) as resp:
        assert sha256(resp.read()) == layer.digest
    done = skopeo_copy(f"{proxy.address}/library/redirected:1", tmp_path / "second")  # follows the redirects
    assert done.returncode == 0, done.stderr
    check_pulled(tmp_path / "second", case, "linux/amd64")


def test_store_unreachable_gives_clear_errors(platproxy: Start, seeded: Seeded, tmp_path: Path) -> None:
    dead = tmp_path / "dead"
    dead.mkdir()
    args = config_args(
        tmp_path,
        """
[store]
backend = "s3"
[store.s3]
endpoint = "http://127.0.0.1:9"
bucket = "nowhere"
access_key = "a"
secret_key = "b"
""",
    )
    proxy = platproxy(seeded.registry.url, "linux/amd64", args)
    started = time.monotonic()
    status, _, body = request(proxy.port, "GET", "/readyz")
    doc = json.loads(body)
    assert status == 503 and doc["store"]["reachable"] is False and doc["store"]["error"]
    layer = seeded.cases["library/multi:1"].images["linux/amd64"].layers[0]
    status, _, body = request(proxy.port, "GET", f"/v2/library/multi/blobs/{layer.digest}")
    assert status == 503
    assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    status, _, body = request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers={"Accept": UPSTREAM_ACCEPT})
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 10  # prompt answers, not every request retrying on its own


def test_with_the_store_gone_known_tags_still_answer_and_blobs_fail_promptly(
    seeded: Seeded, platproxy: Start, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A store of its own (stopping the shared one would break the other tests)."""
    own = Rgw(tmp_path_factory.mktemp("ceph-own")).start()
    try:
        case = fresh_case([{"architecture": "amd64", "os": "linux"}], layer_mib=1)
        push_case(seeded.registry, "library/storegone:1", case)
        name = bucket(own)
        proxy = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, own, name))
        pull_and_land(proxy, "library/storegone:1", tmp_path / "before", own, name, case.images["linux/amd64"])
    finally:
        own.stop()
    started = time.monotonic()
    status, _, body = request(proxy.port, "GET", "/v2/library/storegone/manifests/1",
                                    headers={"Accept": UPSTREAM_ACCEPT})  # fmt: skip
    assert status == 200 and sha256(body) == case.digest_of("linux/amd64")  # verified bytes, from memory
    layer = case.images["linux/amd64"].layers[0]
    status, _, body = request(proxy.port, "GET", f"/v2/library/storegone/blobs/{layer.digest}")
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    status, _, body = request(proxy.port, "GET", "/readyz")
    assert status == 503 and json.loads(body)["store"]["reachable"] is False
    assert time.monotonic() - started < 10


def test_a_missing_bucket_is_a_clear_503_until_it_is_created(
    platproxy: Start, seeded: Seeded, rgw: Rgw, tmp_path: Path
) -> None:
    name = f"not-yet-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    proxy = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name))
    status, _, body = request(proxy.port, "GET", "/readyz")
    assert status == 503 and json.loads(body)["store"]["reachable"] is False
    layer = seeded.cases["library/multi:1"].images["linux/amd64"].layers[0]
    status, _, body = request(proxy.port, "GET", f"/v2/library/multi/blobs/{layer.digest}")
    error = json.loads(body)["errors"][0]
    assert status == 503 and error["code"] == "UNAVAILABLE" and "NoSuchBucket" in error["message"]
    log = proxy.log()
    line = next(json.loads(x) for x in log.splitlines() if "the store is not usable yet" in x)
    assert line["error"] == f"bucket {name} does not exist"
    assert line["create_it"] == f"aws --endpoint-url {rgw.endpoint} --region us-east-1 s3 mb s3://{name}"
    assert f"store s3 {rgw.endpoint} bucket {name} prefix platproxy/" in log  # the banner names the store
    rgw.bucket(name)  # the operator creates it: used without a restart
    deadline = time.monotonic() + 15
    while request(proxy.port, "GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, _, body = request(proxy.port, "GET", f"/v2/library/multi/blobs/{layer.digest}")
    assert status == 200 and sha256(body) == layer.digest


def test_replicas_serve_one_conversion_for_old_engines(seeded: Seeded, platproxy: Start, rgw: Rgw,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """A conversion lands in the bucket under its digest: another replica answers the digest from
    there, and its own tag answer is the same bytes (schema 1 is not signed again with its key)."""
    name = bucket(rgw)
    first = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name))
    second = platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name))
    old_engines = (
        {"User-Agent": "docker/1.9.1 go/go1.4.3 os/linux arch/amd64"},
        {"Accept": f"{DOCKER_SCHEMA1_SIGNED}, application/json, {DOCKER_MANIFEST}, {DOCKER_LIST}",
         "User-Agent": "docker/17.09.1-ce go/go1.8.3 os/linux arch/amd64"},
    )  # fmt: skip
    for headers in old_engines:
        status, made, body = request(first.port, "GET", "/v2/library/multi/manifests/1", headers=headers)
        assert status == 200 and made["content-type"] in (DOCKER_SCHEMA1_SIGNED, DOCKER_MANIFEST)
        digest = made["docker-content-digest"]
        by_digest = request(second.port, "GET", f"/v2/library/multi/manifests/{digest}", headers=headers)
        assert by_digest[0] == 200 and by_digest[2] == body
        tagged = request(second.port, "GET", "/v2/library/multi/manifests/1", headers=headers)
        assert (tagged[1]["docker-content-digest"], tagged[2]) == (digest, body)


def test_thirty_cold_requests_for_one_tag_on_three_replicas_ask_the_upstream_once(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    """The first replica to take the tag's lease asks; the others wait for the record it keeps."""
    case = fresh_case([{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}], 1)
    push_case(seeded.registry, "library/coldtag:1", case)
    name = bucket(rgw)
    replicas = [platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name)) for _ in range(3)]
    tag_path = "/v2/library/coldtag/manifests/1"
    before = seeded.registry.requests_for(tag_path, "GET")

    def ask(i: int) -> str:
        status, headers, body = request(replicas[i % 3].port, "GET", tag_path, headers={"Accept": UPSTREAM_ACCEPT})
        assert status == 200, body
        return headers["docker-content-digest"]

    with ThreadPoolExecutor(30) as pool:
        answers = set(pool.map(ask, range(30)))
    assert answers == {case.digest_of("linux/amd64")}
    assert seeded.registry.requests_for(tag_path, "GET") - before == 1
    assert seeded.registry.requests_for(tag_path, "HEAD") == 0
    keys = landed(rgw, name, set())
    assert not [k for k in keys if "/leases/" in k]  # every tag lease released

    # The warm path asks the bucket nothing about leases: a fresh record answers at once.
    def leases(replica: Platproxy) -> list[str]:
        text = request(replica.port, "GET", "/metrics")[2].decode()
        return [line for line in text.splitlines() if line.startswith("platproxy_lease_total{")]

    assert any('outcome="held"' in line for r in replicas for line in leases(r))  # some replicas did wait
    counted = leases(replicas[0])
    assert ask(0) == case.digest_of("linux/amd64")
    assert leases(replicas[0]) == counted


def test_replicas_share_each_platforms_record_without_overwriting(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    """Two replicas of a central mirror, clients of two platforms (a rule names 127.0.0.2 arm64):
    each platform's tag record is made once, in the bucket, and read by the other replica."""
    case = fresh_case([{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}], 1)
    push_case(seeded.registry, "library/twoplat:1", case)
    name = bucket(rgw)
    rule = '[[clients]]\ncidr = "127.0.0.2/32"\nplatform = "linux/arm64/v8"\n'
    replicas = [platproxy(seeded.registry.url, "linux/amd64", s3_args(tmp_path, rgw, name, rule)) for _ in range(2)]
    expected = {"127.0.0.1": case.digest_of("linux/amd64"), "127.0.0.2": case.digest_of("linux/arm64")}

    def ask(replica: Platproxy, source: str) -> str:
        status, headers, body = request(replica.port, "GET", "/v2/library/twoplat/manifests/1",
                                        headers={"Accept": OCI_MANIFEST}, source=source)  # fmt: skip
        assert status == 200, body
        return headers["docker-content-digest"]

    assert ask(replicas[0], "127.0.0.1") == expected["127.0.0.1"]
    assert ask(replicas[1], "127.0.0.2") == expected["127.0.0.2"]
    asked = seeded.registry.requests_for("/v2/library/twoplat/manifests/", "GET")
    for replica in replicas:  # both answers from both replicas, from the shared records
        for source, digest in expected.items():
            assert ask(replica, source) == digest, (replica.port, source)
    assert seeded.registry.requests_for("/v2/library/twoplat/manifests/", "GET") == asked


def test_private_content_in_the_bucket_carries_no_credential(
    token_upstream: TokenUpstream, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    """``auth = "passthrough"`` on a bucket-backed tier: content, tag records and leases, and
    nothing of anyone's login."""
    name = bucket(rgw)
    config = config_args(tmp_path, passthrough_config(token_upstream.registry) + s3_text(rgw, name))
    proxy = platproxy("", "linux/arm64", config)
    for user, ref in (("alice", "team-a/app:1"), ("bob", "team-b/app:1")):
        done = skopeo_copy(f"{proxy.address}/{ref}", tmp_path / user, "--src-creds", f"{user}:{USERS[user][0]}")
        assert done.returncode == 0, done.stderr
    refused = skopeo_copy(f"{proxy.address}/team-b/app:1", tmp_path / "ab", "--src-creds",
                          f"alice:{USERS['alice'][0]}")  # fmt: skip
    assert refused.returncode != 0
    keys = landed(rgw, name, {blob_key(token_upstream.case.digest_of("linux/arm64/v8"))})
    assert any("/tags/" in k or "tag" in k for k in keys), sorted(keys)
    secrets = token_upstream.secrets()
    for key in keys:
        got = rgw.call("get_object", Bucket=name, Key=key)
        data = got["Body"] + json.dumps(got.get("Metadata", {})).encode() + key.encode()
        assert not [s for s in secrets if s in data], f"a credential is in s3://{name}/{key}"
