"""``[store]``: where verified content lives (the cache directory, or a bucket shared by replicas)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from proxy.config.values import Duration, Interval, Section, Size, is_loopback

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9._/-]*")


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
    lease_ttl: Interval = 30.0
    """A fill's lease lasts this long unless renewed; a replica that died blocks others at most this long."""
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
    """Each replica reports what it served this often, in one object (a collection's "last pulled")."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
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
            raise ValueError(f"store.s3.{given} is set but store.s3.{missing} is not: set both (either from "
                             f"PLATPROXY_STORE__S3__{missing.upper()}), or neither to use botocore's chain "
                             "(AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY, profiles, instance roles)")  # fmt: skip
        return self

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
