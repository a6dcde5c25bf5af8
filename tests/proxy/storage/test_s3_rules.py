"""The pure decisions of the scale-out pieces: leases, shared tag records, store configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from proxy.config import ConfigError, S3Config, load_config, masked
from proxy.pull.blobs import skipping
from proxy.storage.records import TagRecord
from proxy.storage.s3.lease import LeaseBody, Leases, lease_body, next_poll, parse_lease, still_held
from proxy.storage.s3.peers import SIGNATURE_WINDOW, sign, signed_by
from proxy.storage.sharedtags import decode, encode, newer, record_key


def test_a_lease_holds_until_it_expires() -> None:
    body = parse_lease(lease_body("replica-a", now=100.0, ttl=30.0))
    assert body == LeaseBody("replica-a", 130.0)
    assert still_held(body, 129.9)
    assert not still_held(body, 130.0)
    assert not still_held(None, 0.0)


@pytest.mark.parametrize("data", [b"", b"null", b"[]", b'{"owner": 1, "expires": 5}', b'{"owner": "a"}',
                                  b'{"owner": "a", "expires": true}', b"\xff\xfe"])  # fmt: skip
def test_anything_but_our_lease_holds_nothing(data: bytes) -> None:
    assert parse_lease(data) is None


def test_waiting_backs_off_to_eight_times_the_interval() -> None:
    waits = []
    pause = 0.0
    for _ in range(6):
        pause = next_poll(pause, 0.25)
        waits.append(pause)
    assert waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


RECORD = TagRecord(upstream="docker.io", repo="library/alpine", tag="3", host="linux/arm/v7",
                   digest="sha256:" + "a" * 64, media_type="application/vnd.oci.image.manifest.v1+json",
                   upstream_digest="sha256:" + "b" * 64,
                   index_digest="sha256:" + "b" * 64, platform="linux/arm/v7", label="exact", reason="rank 0",
                   fetched_at=10.0, checked_at=20.0)  # fmt: skip


def test_shared_records_round_trip_and_garbage_is_refused() -> None:
    assert decode(encode(RECORD)) == RECORD
    doc = json.loads(encode(RECORD))
    assert decode(json.dumps({**doc, "evil": 1}).encode()) is None
    assert decode(json.dumps({**doc, "digest": 5}).encode()) is None
    assert decode(json.dumps({**doc, "checked_at": "soon"}).encode()) is None
    assert decode(b"not json") is None


def test_the_most_recently_checked_record_wins() -> None:
    later = dataclasses.replace(RECORD, checked_at=30.0)
    assert newer(RECORD, later) is later
    assert newer(later, RECORD) is later
    assert newer(None, RECORD) is RECORD
    assert newer(RECORD, None) is RECORD


def test_record_keys_separate_hosts_and_stay_under_the_prefix() -> None:
    a = record_key("pp/", "docker.io", "library/alpine", "3", "linux/arm/v7")
    b = record_key("pp/", "docker.io", "library/alpine", "3", "linux/amd64/v3")
    assert a != b and a.startswith("pp/tags/docker.io/library/alpine/_tags/3/") and a.endswith(".json")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[store]\nbackend = "s3"\n', "needs [store.s3] bucket"),
        ('[store]\nbackend = "nfs"\n', "[store] backend"),
        ('[store.s3]\nbucket = "b12"\nendpoint = "http://s3.example.com"\n', "plain http to s3.example.com"),
        ('[store.s3]\nbucket = "b12"\nendpoint = "ftp://x"\n', "[store.s3] endpoint"),
        ('[store.s3]\nbucket = "Bad_Bucket"\n', "[store.s3] bucket"),
        ('[store.s3]\nbucket = "b12"\npart_size = "1MiB"\n', "at least 5MiB"),
        ('[store.s3]\nbucket = "b12"\nprefix = "no space"\n', "[store.s3] prefix: 'no space' is not a key prefix"),
        ('[store.s3]\nbucket = "b12"\nlease_ttl = "soon"\n', "[store.s3] lease_ttl"),
        ('[store.s3]\nbucket = "b12"\npeer_listen = "5002"\n', "[store.s3] peer_listen: expected HOST:PORT"),
        ('[store.s3]\nbucket = "b12"\npeer_url = "https://x:1"\n', "expected http://HOST:PORT"),
        ('[store.s3]\nbucket = "b12"\nmax_size = "lots"\n', "[store.s3] max_size"),
        ('[store.s3]\nbucket = "b12"\nmax_age = "-1d"\n', "[store.s3] max_age"),
    ],
)
def test_store_config_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value).strip()


def test_a_peer_listener_without_its_secret_stops_serving_but_not_maintenance(tmp_path: Path) -> None:
    text = '[store]\nbackend = "s3"\n[store.s3]\nbucket = "b12"\npeer_listen = "0.0.0.0:5002"\n'
    config = load_config(write(tmp_path, text), env={})
    assert "needs store.s3.peer_secret, at least 16" in config.store.s3.serving_problem()
    with_secret = load_config(write(tmp_path, '[store.s3]\nbucket = "b12"\npeer_listen = "0.0.0.0:5002"\n'),
                              env={"PLATPROXY_STORE__S3__PEER_SECRET": "0123456789abcdef"})  # fmt: skip
    assert with_secret.store.s3.serving_problem() == ""


def test_the_store_secrets_are_masked(tmp_path: Path) -> None:
    text = ('[store]\nbackend = "s3"\n[store.s3]\nbucket = "mirror"\naccess_key = "AK"\nsecret_key = "hunter2"\n'
            'peer_listen = "0.0.0.0:5002"\npeer_secret = "correct-horse-battery"\n')  # fmt: skip
    shown = json.dumps(masked(load_config(write(tmp_path, text), env={})))
    assert "hunter2" not in shown and '"secret_key": "***"' in shown
    assert "correct-horse" not in shown and '"peer_secret": "***"' in shown


def test_a_lease_names_its_holders_peer_listener(tmp_path: Path) -> None:
    body = parse_lease(lease_body("replica-a", now=100.0, ttl=10.0, peer="http://10.0.0.5:5002"))
    assert body == LeaseBody("replica-a", 110.0, "http://10.0.0.5:5002")
    assert parse_lease(json.dumps({"owner": "a", "expires": 1, "peer": "file:///etc"}).encode()) == LeaseBody("a", 1)
    wildcard = load_config(write(tmp_path, '[store.s3]\nbucket = "b12"\npeer_listen = "0.0.0.0:5002"\n'
                                 'peer_secret = "0123456789abcdef"\n'), env={}).store.s3  # fmt: skip
    assert wildcard.advertised_peer().startswith("http://") and wildcard.advertised_peer().endswith(":5002")
    assert "0.0.0.0" not in wildcard.advertised_peer()  # a wildcard is no address to reach
    named = wildcard.model_copy(update={"peer_url": "http://pod-1.tier:5002"})
    assert named.advertised_peer() == "http://pod-1.tier:5002"
    assert wildcard.model_copy(update={"peer_listen": ""}).advertised_peer() == ""


def test_peer_requests_are_signed_for_one_blob_offset_and_minute() -> None:
    digest = "sha256:" + "a" * 64
    header = sign("s" * 16, digest, 1024, 1000.0)
    assert signed_by("s" * 16, header, digest, 1024, 1030.0)
    assert not signed_by("t" * 16, header, digest, 1024, 1030.0)  # another secret
    assert not signed_by("s" * 16, header, "sha256:" + "b" * 64, 1024, 1030.0)  # another blob
    assert not signed_by("s" * 16, header, digest, 0, 1030.0)  # another offset
    assert not signed_by("s" * 16, header, digest, 1024, 1000.0 + SIGNATURE_WINDOW + 1)  # too old
    assert not signed_by("s" * 16, "", digest, 1024, 1000.0) and not signed_by("s" * 16, "x:y", digest, 1024, 1000.0)
    assert "s" * 16 not in header


def test_a_fill_carries_on_after_what_another_replica_gave_it() -> None:
    got: list[bytes] = []
    take = skipping(lambda piece: got.append(bytes(piece)), 5)
    for piece in (b"abc", b"defg", b"hij"):
        take(memoryview(piece))
    assert b"".join(got) == b"fghij"
    every: list[bytes] = []
    assert skipping(every.append, 0) == every.append


def test_a_parent_upstream_is_configured_per_upstream(tmp_path: Path) -> None:
    text = '[[upstream]]\nname = "docker.io"\nurl = "http://127.0.0.1:5001"\nparent = true\n'
    config = load_config(write(tmp_path, text), env={})
    assert config.upstreams[0].parent and config.store.backend == "filesystem"


def test_the_s3_store_without_its_client_is_a_clear_refusal(tmp_path: Path) -> None:
    """A plain ``pip install platproxy`` has no aiobotocore: say which extra to install, exit 2."""
    config = write(tmp_path, '[store]\nbackend = "s3"\n[store.s3]\nbucket = "mirror"\n')
    code = (
        "import sys; sys.modules['aiobotocore'] = None; from proxy.cli import main; "
        f"sys.exit(main(['serve', '--config', {str(config)!r}, '--cache-dir', {str(tmp_path / 'c')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "pip install 'platproxy[s3]'" in done.stderr and "Traceback" not in done.stderr


class RacingBucket:
    """A bucket double for a race Ceph RGW shows only now and then with two gateways: a lease
    released (deleted) through one gateway while another checks ``If-None-Match``/``If-Match``
    answers 404 NoSuchKey to the conditional write instead of 412."""

    def __init__(self) -> None:
        self.config = S3Config(bucket="b12")
        self.calls: list[str] = []

    async def call(self, operation: str, **kwargs: object) -> object:
        self.calls.append(operation)
        raise ClientError({"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, operation)

    async def call_if_exists(self, operation: str, **kwargs: object) -> object:
        self.calls.append(operation)
        return None


def test_a_lease_deleted_during_a_conditional_write_is_a_lost_race_not_a_failure() -> None:
    bucket = RacingBucket()
    leases = Leases(bucket)  # type: ignore[arg-type]
    digest = "sha256:" + "a" * 64
    assert asyncio.run(leases.acquire_or_holder(digest)) == (None, None)  # look again, as after a 412
    assert bucket.calls == ["put_object", "get_object"]
    assert asyncio.run(leases.swap("platproxy/leases/x", b"{}", '"etag"')) is None  # changed: not ours
