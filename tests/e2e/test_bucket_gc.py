"""Retention of the shared bucket: ``platproxy cache ls/gc/rm`` on a bucket-backed config, and
the replica elected to collect.

Real parts only: the session's Distribution registry upstream, replicas as real processes on
one bucket of the real Ceph cluster (RGW), skopeo pulling.  The content is 10 images of one
10 MiB layer each (100 MiB), against a 40 MiB budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Seeded, skopeo_copy
from tests.ocibuild import Image, gzip_layer, image
from tests.registry import Platproxy, cli, config_args
from tests.rgw import Rgw, blob_key, bucket, landed, s3_text

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
MiB = 2**20
AMD64 = {"architecture": "amd64", "os": "linux"}
COUNT = 10


@pytest.fixture(scope="module")
def images(seeded: Seeded) -> list[Image]:
    """10 single-platform images of 10 MiB each (random bytes: gzip keeps them that size)."""
    made = []
    for i in range(COUNT):
        img = image(AMD64, [gzip_layer({f"data{i}.bin": os.urandom(10 * MiB)})])
        seeded.registry.push_image(f"library/gc{i}", img, "1")
        made.append(img)
    return made


def keys_of(img: Image) -> set[str]:
    return {blob_key(b.digest) for b in (img.manifest, img.config, *img.layers)}


def pull(proxy: Platproxy, i: int, img: Image, dest: Path) -> None:
    done = skopeo_copy(f"{proxy.address}/library/gc{i}:1", dest)
    assert done.returncode == 0, done.stderr
    for b in (img.config, *img.layers):
        data = (dest / b.digest.split(":")[1]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == b.digest


def fill_bucket(platproxy: Start, seeded: Seeded, rgw: Rgw, images: list[Image], tmp_path: Path,
                extra: str = "") -> tuple[str, list[Platproxy], Path]:  # fmt: skip
    """3 replicas on a new bucket; gc0..gc9 pulled in that order, then gc0 again (so the least
    recently pulled are gc1, gc2, ...).  Returns the bucket, the replicas and their config file."""
    name = bucket(rgw)
    text = s3_text(rgw, name, 'max_size = "40MiB"\npull_times_every = "0.2s"\n' + extra)
    replicas = [platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, text)) for n in range(3)]
    for i, img in enumerate(images):
        pull(replicas[i % 3], i, img, tmp_path / f"pull{i}")
        landed(rgw, name, keys_of(img))
    pull(replicas[1], 0, images[0], tmp_path / "again0")
    time.sleep(0.6)  # the replicas' pull reports (every 0.2 s) are in the bucket
    config = tmp_path / "gc.toml"
    config.write_text(text)
    return name, replicas, config


def blobs_total(rgw: Rgw, name: str) -> int:
    return sum(size for key, size in rgw.keys(name, "platproxy/blobs/").items())


def gc(config: Path, *extra: str) -> dict[str, object]:
    done = cli("cache", "gc", "--config", str(config), "--json", *extra)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def upstream_requests(seeded: Seeded, i: int) -> int:
    return seeded.registry.requests_for(f"/v2/library/gc{i}/", "GET") + seeded.registry.requests_for(
        f"/v2/library/gc{i}/", "HEAD"
    )


def test_cache_gc_brings_the_bucket_under_its_budget_oldest_pulled_first(
    seeded: Seeded, platproxy: Start, rgw: Rgw, images: list[Image], tmp_path: Path
) -> None:
    name, replicas, config = fill_bucket(platproxy, seeded, rgw, images, tmp_path)
    assert blobs_total(rgw, name) > 100 * MiB
    # An upload a crashed replica left unfinished (no lease: no fill is writing it).
    orphan = "platproxy/blobs/sha256/" + "ab" * 32
    started = rgw.call("create_multipart_upload", Bucket=name, Key=orphan)
    rgw.call("upload_part", Bucket=name, Key=orphan, UploadId=started["UploadId"], PartNumber=1, Body=b"x" * 1024)

    listed = cli("cache", "ls", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert f"bucket {name}" in listed.stdout and "10 tag record(s)" in listed.stdout
    assert "1 unfinished upload(s)" in listed.stdout and "/library/gc3:1" in listed.stdout
    assert "never collected" in listed.stdout

    before = rgw.keys(name)
    planned = gc(config, "--dry-run", "--abort-uploads-after", "0s")
    assert planned["dry_run"] is True and rgw.keys(name) == before  # a dry run changes nothing
    assert planned["uploads_aborted"] == 1 and rgw.call("list_multipart_uploads", Bucket=name).get("Uploads")
    shown = cli("cache", "gc", "--config", str(config), "--dry-run")
    assert "would remove" in shown.stdout and "dry run: nothing changed" in shown.stdout, shown.stdout

    done = gc(config, "--abort-uploads-after", "0s")
    assert done == {**planned, "dry_run": False, "seconds": done["seconds"],
                    "pull_batches_merged": done["pull_batches_merged"]}  # fmt: skip
    assert blobs_total(rgw, name) <= 40 * MiB < int(str(done["bytes_before"]))
    assert not rgw.call("list_multipart_uploads", Bucket=name).get("Uploads")  # the orphan upload is gone
    assert not [k for k in rgw.keys(name, "platproxy/pulls/") if not k.endswith("/merged.json")]
    assert "last collected" in cli("cache", "ls", "--config", str(config)).stdout
    # Oldest pulled first: gc0 was pulled again last, so gc1..gc7 went and gc0, gc8, gc9 stayed.
    keys = rgw.keys(name)
    kept = [i for i, img in enumerate(images) if keys_of(img) <= keys.keys()]
    gone = [i for i, img in enumerate(images) if not keys_of(img) & keys.keys()]
    assert (kept, gone) == ([0, 8, 9], [1, 2, 3, 4, 5, 6, 7]), (kept, gone)
    records = [k for k in keys if k.startswith("platproxy/tags/")]
    assert sorted(k.split("/library/")[1].split("/")[0] for k in records) == ["gc0", "gc8", "gc9"]

    # Every image still tagged pulls afterwards with no upstream request, on a new replica too.
    fresh = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, config.read_text()))
    asked = {i: upstream_requests(seeded, i) for i in kept}
    for i in kept:
        pull(fresh, i, images[i], tmp_path / f"after{i}")
        pull(replicas[i % 3], i, images[i], tmp_path / f"after-r{i}")
    assert {i: upstream_requests(seeded, i) for i in kept} == asked
    # A dropped image is fetched again (from the upstream) by a replica that still has its record.
    asked_for_1 = upstream_requests(seeded, 1)
    pull(replicas[1], 1, images[1], tmp_path / "refetched1")
    assert upstream_requests(seeded, 1) > asked_for_1


def test_a_collection_racing_ten_pulls_loses_nothing(
    seeded: Seeded, platproxy: Start, rgw: Rgw, images: list[Image], tmp_path: Path
) -> None:
    name, replicas, config = fill_bucket(platproxy, seeded, rgw, images, tmp_path)

    def puller(i: int) -> None:
        pull(replicas[i % 3], i, images[i], tmp_path / f"race{i}")

    with ThreadPoolExecutor(11) as pool:
        pulls = [pool.submit(puller, i) for i in range(COUNT)]
        collection = pool.submit(gc, config, "--max-size", "20MiB")
        for p in pulls:
            p.result()  # every pull completed with every blob checked
        assert int(str(collection.result()["bytes_removed"])) > 0
    time.sleep(1)
    for key, size in rgw.keys(name, "platproxy/blobs/").items():  # nothing partial, nothing wrong
        data = rgw.call("get_object", Bucket=name, Key=key)["Body"]
        assert len(data) == size and hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[1]


def test_the_elected_replica_collects_and_only_one_at_a_time(
    seeded: Seeded, platproxy: Start, rgw: Rgw, images: list[Image], tmp_path: Path
) -> None:
    name, replicas, config = fill_bucket(platproxy, seeded, rgw, images, tmp_path, 'gc_interval = "1s"')
    deadline = time.monotonic() + 20
    while blobs_total(rgw, name) > 40 * MiB and time.monotonic() < deadline:
        time.sleep(0.5)
    assert blobs_total(rgw, name) <= 40 * MiB
    collected = [r.log().count('"bucket collected"') for r in replicas]
    assert sum(collected) >= 1, collected
    # The replicas pace themselves by the last collection: not each of them every interval.
    time.sleep(2.5)
    again = [r.log().count('"bucket collected"') for r in replicas]
    assert sum(again) - sum(collected) <= 3, (collected, again)  # 2.5 s at 1 s: not 3 replicas x 2-3
    # While a collection holds the gc lease, `cache gc` refuses to run beside it.
    rgw.call("put_object", Bucket=name, Key="platproxy/leases/gc",
             Body=json.dumps({"owner": "elsewhere", "expires": time.time() + 60}).encode())  # fmt: skip
    refused = cli("cache", "gc", "--config", str(config))
    assert refused.returncode == 1 and "another collection is running" in refused.stderr, refused.stderr


def test_cache_rm_forgets_an_image_in_the_bucket_and_keeps_what_others_share(
    seeded: Seeded, platproxy: Start, rgw: Rgw, images: list[Image], tmp_path: Path
) -> None:
    name = bucket(rgw)
    text = s3_text(rgw, name)
    proxy = platproxy(seeded.registry.url, "linux/amd64", config_args(tmp_path, text))
    for i in (3, 4):
        pull(proxy, i, images[i], tmp_path / f"pull{i}")
        landed(rgw, name, keys_of(images[i]))
    config = tmp_path / "rm.toml"
    config.write_text(text)
    listed = json.loads(cli("cache", "ls", "--config", str(config), "--json").stdout)
    assert len(listed["tags"]) == 2 and all(row["complete"] for row in listed["tags"])
    gc3 = next(row["image"] for row in listed["tags"] if "/library/gc3:" in row["image"])
    before = rgw.keys(name)
    dry = cli("cache", "rm", gc3, "--config", str(config), "--dry-run")
    assert dry.returncode == 0 and "would remove" in dry.stdout and rgw.keys(name) == before
    done = json.loads(cli("cache", "rm", gc3, "--config", str(config), "--json").stdout)
    assert done["tags_removed"] == [gc3] and done["objects_removed"] == 3  # manifest, config, layer
    keys = rgw.keys(name)
    assert not keys_of(images[3]) & keys.keys() and keys_of(images[4]) <= keys.keys()
    missing = cli("cache", "rm", gc3, "--config", str(config))
    assert missing.returncode == 2 and "nothing cached for" in missing.stderr
    mixed = cli("cache", "ls", "--config", str(config), "--cache-dir", str(tmp_path))
    assert mixed.returncode == 2 and "drop --cache-dir" in mixed.stderr


def test_bucket_commands_on_a_missing_bucket_say_so(rgw: Rgw, tmp_path: Path) -> None:
    config = tmp_path / "missing.toml"
    config.write_text(s3_text(rgw, "no-such-bucket-here"))
    for command in (["ls"], ["gc", "--dry-run"], ["rm", "library/x"]):
        done = cli("cache", *command, "--config", str(config))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "bucket no-such-bucket-here" in done.stderr and "NoSuchBucket" in done.stderr, done.stderr
