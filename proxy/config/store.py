"""``[store]``: where verified content lives (the cache directory, or a bucket shared by replicas)."""

from __future__ import annotations

import re
import socket
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from proxy.config.values import Duration, Interval, Section, Size, host_port, is_loopback

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9._/-]*")


def machine_address() -> str:
    """This machine's address as the other replicas would reach it (its hostname's, as a pod's)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class S3Config(Section):
    """A bucket shared by every replica (``[store] backend = "s3"``)."""

    endpoint: str = ""
    """The S3 endpoint URL (``https://s3.eu-west-1.amazonaws.com``, a Ceph RGW); empty: AWS's default."""
    bucket: str = ""
    prefix: str = "platproxy/"
    """Every key platproxy writes starts with this (a ``/`` is added when it does not end with one)."""
    region: str = "us-east-1"
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    """``path`` (endpoint/bucket/key: Ceph RGW, MinIO) or ``virtual`` (bucket.endpoint/key: AWS's preference)."""
    access_key: str = ""
    """Empty: botocore's usual chain (``AWS_ACCESS_KEY_ID``, profiles, instance roles)."""
    secret_key: str = Field(default="", repr=False)
    insecure_http: bool = False
    """Allow a plain-http endpoint that is not loopback (RGW's own default inside a trusted
    cluster network); never the default: the store's credentials and content cross in clear."""
    verify_tls: bool = True
    redirect: bool = False
    """Answer cached blob GETs with a 307 to a presigned URL (clients must reach the store)."""
    presign_ttl: Interval = 300.0
    lease_ttl: Interval = 8.0
    """A fill's lease lasts this long unless renewed (every third of it); a replica that died
    holds the others back at most this long (plus one poll, 2 s at most) before one takes the
    fill over: about 10 s by default.  Shorter: a faster takeover, but a holder that cannot renew
    for that long (a store answering slowly, a paused process) loses its lease and the blob is
    fetched twice; nothing is ever served wrong either way."""
    peer_listen: str = ""
    """``HOST:PORT`` of this replica's internal listener: replicas waiting on its fills stream
    the bytes from it as they arrive (authenticated with ``peer_secret``; never the client
    port).  Empty: waiting replicas poll the bucket for the finished blob."""
    peer_url: str = ""
    """How the other replicas reach this one's ``peer_listen`` (``http://10.1.2.3:5002``); empty:
    ``http://<listen host>:<port>``, with a wildcard host replaced by this machine's address."""
    peer_secret: str = Field(default="", repr=False)
    """Shared by the replicas (at least 16 characters); it signs each peer request and never
    crosses the network itself."""
    poll_interval: Interval = 0.25
    """How often a replica waiting on another's fill looks for the finished blob (backing off to 8x)."""
    part_size: Size = 16 * 2**20
    """Multipart upload part size (S3's minimum is 5 MiB); smaller blobs go in one PUT."""
    max_size: Size = 0
    """The bucket's budget: a collection removes the least recently pulled images beyond it (0: none)."""
    max_age: Duration = 0.0
    """A collection removes content not pulled for this long (``30d``; 0: no age limit)."""
    gc_interval: Duration = 0.0
    """Every replica offers to collect the bucket this often and one (the gc lease's holder)
    does; 0: only ``platproxy cache gc`` collects (from cron or a CronJob)."""
    abort_uploads_after: Interval = 86400.0
    """A collection aborts multipart uploads started longer ago than this whose fill holds no lease."""
    pull_times_every: Interval = 60.0
    """Each replica reports what it served this often, in one object (a collection's "last pulled"),
    and shares its fleet records (``platproxy report``) as another, when they changed."""
    nodes_every: Interval = 30.0
    """How often a replica reads the node registrations the others took (one listing; only changed
    objects are read)."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
            if "@" in parts.netloc:
                raise ValueError("the endpoint has credentials in it; give them as access_key and secret_key")
        return value.rstrip("/")

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if (value and not _BUCKET.fullmatch(value)) or ".." in value:
            raise ValueError(f"{value!r} is not a bucket name: 3 to 63 characters of lower-case letters, digits, "
                             "dots and hyphens, starting and ending with a letter or a digit (S3's rules)")  # fmt: skip
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value) or value.startswith("/") or "//" in value:
            raise ValueError(f"{value!r} is not a key prefix: letters, digits and . _ - / (no leading '/', "
                             "no '//'), such as platproxy/ or mirrors/eu/")  # fmt: skip
        return value if not value or value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _plain_http_and_keys(self) -> S3Config:
        host = urlsplit(self.endpoint).hostname or ""
        if self.endpoint.startswith("http://") and not is_loopback(host) and not self.insecure_http:
            raise ValueError(f"plain http to {host} is refused for the store; use https, or set "
                             "store.s3.insecure_http = true on a trusted network")  # fmt: skip
        if bool(self.access_key) != bool(self.secret_key):
            given, missing = ("access_key", "secret_key") if self.access_key else ("secret_key", "access_key")
            raise ValueError(f"[store.s3] {given} is set but [store.s3] {missing} is not: set both (either from "
                             f"PLATPROXY_STORE__S3__{missing.upper()}), or neither to use botocore's chain "
                             "(AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY, profiles, instance roles)")  # fmt: skip
        return self

    @field_validator("peer_listen")
    @classmethod
    def _peer_listen(cls, value: str) -> str:
        return host_port(value) if value else value

    @field_validator("peer_url")
    @classmethod
    def _peer_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme != "http" or not parts.hostname or not parts.port or parts.path not in ("", "/"):
                raise ValueError("expected http://HOST:PORT, the address other replicas reach peer_listen at")
        return value.rstrip("/")

    def serving_problem(self) -> str:
        """What stops a replica from serving (``serve`` and ``config check`` refuse it): its peer
        listener without a shared secret.  Not a config error: a maintenance command (``cache gc``,
        ``cache ls``) serves no peers and runs with the same config and without the secret."""
        if self.peer_listen and len(self.peer_secret) < 16:
            return ("store.s3.peer_listen needs store.s3.peer_secret, at least 16 characters shared by every "
                    "replica (or PLATPROXY_STORE__S3__PEER_SECRET)")  # fmt: skip
        return ""

    def advertised_peer(self) -> str:
        """The URL this replica's peer listener is announced at in its leases (empty: none)."""
        if not self.peer_listen:
            return ""
        if self.peer_url:
            return self.peer_url
        host, _, port = self.peer_listen.rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = machine_address()
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    @field_validator("part_size")
    @classmethod
    def _part_size(cls, value: int) -> int:
        if value < 5 * 2**20:
            raise ValueError("S3 multipart parts must be at least 5MiB")
        return value


class StoreConfig(Section):
    backend: Literal["filesystem", "s3"] = "filesystem"
    """Where verified content lives: files in ``[cache] dir`` (a sidecar), or a bucket shared by replicas."""
    s3: S3Config = S3Config()

    @model_validator(mode="after")
    def _bucket(self) -> StoreConfig:
        if self.backend == "s3" and not self.s3.bucket:
            raise ValueError("backend s3 needs [store.s3] bucket")
        return self
