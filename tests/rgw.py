"""A real S3 server for tests: Ceph's RADOS Gateway from Debian, one mon and one memstore OSD.

Follows the single-node recipe (mon + OSD + radosgw on the beast frontend), with every port
chosen free on 127.0.0.1 so that it can run beside anything else.  About 3 s to start.  A memstore
cluster cannot be restarted, so each ``Rgw`` is made fresh in its own folder and thrown away.
Deleted objects are garbage-collected after 30 s instead of rgw's default 2 h (memstore holds
them in RAM).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tests.registry import RESERVED, config_args, free_port, wait_http

ACCESS_KEY = "PLATPROXYTESTACCESS01"
SECRET_KEY = "platproxytestsecretkey000000000000000001"
REGION = "us-east-1"


def _free_range(size: int) -> int:
    """The first port of ``size`` consecutive free loopback ports (for the OSD's messengers)."""
    for _ in range(200):
        first = free_port()
        if first + size >= 65535:
            continue
        try:
            socks = []
            for port in range(first, first + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            RESERVED.update(range(first, first + size))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for the Ceph OSD")


def _conf(base: Path, fsid: str, mon_port: int, rgw_port: int, rgw2_port: int, ms_first: int,
          memory: int) -> str:  # fmt: skip
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
ms bind ipv6 = false
ms bind port min = {ms_first}
ms bind port max = {ms_first + 7}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = {base}/run
admin socket = {base}/run/$cluster-$name.asok
pid file = {base}/run/$cluster-$name.pid
log file = {base}/log/$cluster-$name.log
mon cluster log file = {base}/log/$cluster.log
crash dir = {base}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon max pg per osd = 1000
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.1

[client]
keyring = {base}/keyring.admin

[mon]
keyring = $mon_data/keyring
mon data = {base}/mon/$cluster-$id
mgr initial modules = iostat

[osd]
keyring = $osd_data/keyring
osd data = {base}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = {memory}

[client.rgw]
rgw thread pool size = 64
rgw gc obj min wait = 30
rgw gc processor period = 30

[client.rgw.gw]
keyring = {base}/rgw/keyring
rgw data = {base}/rgw
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}

[client.rgw.gw2]
keyring = {base}/rgw2/keyring
rgw data = {base}/rgw2
rgw frontends = beast endpoint=127.0.0.1:{rgw2_port}
"""


class Rgw:
    """A running single-node Ceph cluster with two radosgw gateways (as real Ceph runs several
    behind a load balancer): ``endpoint`` and ``endpoints[1]`` are their S3 addresses."""

    def __init__(self, base: Path, memory: int = 2 * 2**30) -> None:
        """``memory``: what the memstore OSD may hold (a full OSD blocks every write)."""
        self.base = base
        self.memory = memory
        self.mon_port = free_port()
        self.port = free_port()
        self.port2 = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.endpoints = [self.endpoint, f"http://127.0.0.1:{self.port2}"]
        self.conf = base / "ceph.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _run(self, *args: str) -> str:
        out = subprocess.run(args, check=True, capture_output=True, timeout=60)
        return out.stdout.decode()

    def _daemon(self, name: str, *args: str) -> None:
        log = (self.base / "log" / f"{name}.stdout").open("wb")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _until(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"ceph {name} exited while waiting for {what}; see {self.base}/log")
            try:
                if check():
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"ceph: {what} did not happen within {timeout}s; see {self.base}/log")

    def start(self) -> Rgw:
        b, c = self.base, str(self.conf)
        for d in ("mon", "osd", "rgw", "rgw2", "log", "run", "crash"):
            (b / d).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(_conf(b, fsid, self.mon_port, self.port, self.port2, _free_range(8), self.memory))
        self._run("ceph-authtool", "--create-keyring", f"{b}/keyring.mon", "--gen-key", "-n", "mon.",
                  "--cap", "mon", "allow *")  # fmt: skip
        self._run("ceph-authtool", "--create-keyring", f"{b}/keyring.admin", "--gen-key", "-n", "client.admin",
                  "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *")  # fmt: skip
        self._run("ceph-authtool", f"{b}/keyring.mon", "--import-keyring", f"{b}/keyring.admin")
        self._run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", "--fsid", fsid,
                  f"{b}/monmap")  # fmt: skip
        self._run("ceph-mon", "-c", c, "--mkfs", "-i", "a", "--monmap", f"{b}/monmap", "--keyring", f"{b}/keyring.mon")
        self._daemon("mon", "ceph-mon", "-c", c, "-f", "-i", "a")
        self._until("the mon", lambda: self._try("ceph", "-c", c, "mon", "stat"))
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "-c", c, "osd", "new", osd_uuid).strip()
        (b / "osd" / f"ceph-{osd_id}").mkdir(parents=True, exist_ok=True)
        self._run("ceph-osd", "-c", c, "-i", osd_id, "--mkfs", "--mkkey", "--osd-uuid", osd_uuid, "--no-mon-config")
        self._run("ceph", "-c", c, "auth", "add", f"osd.{osd_id}", "osd", "allow *", "mon", "allow profile osd",
                  "-i", f"{b}/osd/ceph-{osd_id}/keyring")  # fmt: skip
        self._daemon("osd", "ceph-osd", "-c", c, "-f", "-i", osd_id)
        self._until("the OSD", lambda: "1 up" in self._run("ceph", "-c", c, "osd", "stat"))
        for gateway, data, port in (("gw", "rgw", self.port), ("gw2", "rgw2", self.port2)):
            self._run("ceph", "-c", c, "auth", "get-or-create", f"client.rgw.{gateway}", "mon", "allow rw", "osd",
                      "allow rwx", "-o", f"{b}/{data}/keyring")  # fmt: skip
            self._daemon(data, "radosgw", "-c", c, "-f", "-n", f"client.rgw.{gateway}")
            wait_http(port, "/", timeout=60, proc=self.procs[data])
        self._run("radosgw-admin", "-c", c, "user", "create", "--uid=platproxy", "--display-name=platproxy tests",
                  f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}")  # fmt: skip
        return self

    def _try(self, *args: str) -> bool:
        return subprocess.run(args, capture_output=True, timeout=5).returncode == 0

    def stop(self) -> None:
        """In order (gateways, OSD, mon): an OSD stopped after its mon waits 5 s for it."""
        for name in ("rgw", "rgw2", "osd", "mon"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- S3 calls for the tests themselves ---------------------------------------------------------

    def client_kwargs(self) -> dict[str, Any]:
        from botocore.config import Config as BotoConfig

        return {
            "endpoint_url": self.endpoint, "region_name": REGION, "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "config": BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"},
                                 request_checksum_calculation="when_required",
                                 response_checksum_validation="when_required"),
        }  # fmt: skip

    def call(self, method: str, **kwargs: Any) -> Any:
        """One S3 call (``create_bucket``, ``list_objects_v2``, ...) from synchronous test code."""

        async def go() -> Any:
            from aiobotocore.session import get_session

            async with get_session().create_client("s3", **self.client_kwargs()) as s3:
                result = await getattr(s3, method)(**kwargs)
                if "Body" in result:
                    async with result["Body"] as body:
                        result["Body"] = await body.read()
                return result

        return asyncio.run(go())

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` with its size."""
        found: dict[str, int] = {}
        token: dict[str, str] = {}
        while True:
            page = self.call("list_objects_v2", Bucket=bucket, Prefix=prefix, **token)
            found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def bucket(self, name: str) -> str:
        """A new bucket, warmed up by one multipart upload (rgw creates three pools on the first)."""
        self.call("create_bucket", Bucket=name)
        up = self.call("create_multipart_upload", Bucket=name, Key="warmup")
        part = self.call("upload_part", Bucket=name, Key="warmup", UploadId=up["UploadId"], PartNumber=1,
                         Body=os.urandom(1024))  # fmt: skip
        self.call("complete_multipart_upload", Bucket=name, Key="warmup", UploadId=up["UploadId"],
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})  # fmt: skip
        self.call("delete_object", Bucket=name, Key="warmup")
        return name


_BUCKETS = itertools.count()


def bucket(rgw: Rgw) -> str:
    """A new, empty bucket on the cluster (one per test)."""
    return rgw.bucket(f"platproxy-test-{os.getpid()}-{next(_BUCKETS)}")


def s3_args(tmp_path: Path, rgw: Rgw, name: str, extra: str = "", gateway: int = 0) -> list[str]:
    return config_args(tmp_path, s3_text(rgw, name, extra, gateway))


def s3_text(rgw: Rgw, name: str, extra: str = "", gateway: int = 0) -> str:
    """A ``[store]`` on bucket ``name`` through the cluster's first gateway (or ``gateway``)."""
    return f"""
[store]
backend = "s3"
[store.s3]
endpoint = "{rgw.endpoints[gateway]}"
bucket = "{name}"
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
poll_interval = "0.1s"
{extra}
"""


def blob_key(digest: str) -> str:
    return f"platproxy/blobs/sha256/{digest.split(':')[1]}"


def landed(server: Rgw, name: str, keys: set[str], timeout: float = 10.0) -> dict[str, int]:
    """The bucket's listing once ``keys`` are all in it: a client gets its last byte as soon as
    the digest matched, and the upload completes after that."""
    deadline = time.monotonic() + timeout
    while not keys <= set(listing := server.keys(name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert keys <= set(listing), sorted(keys - set(listing))
    return listing
