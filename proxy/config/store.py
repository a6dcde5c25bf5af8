"""``[store]``: where verified content lives (the cache directory, or a bucket shared by replicas)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from proxy.config.values import Interval, Section, Size, is_loopback


class S3Config(Section):
    """A bucket shared by every replica (``[store] backend = "s3"``)."""

    endpoint: str = ""
    """The S3 endpoint URL (``https://s3.eu-west-1.amazonaws.com``, a Ceph RGW); empty: AWS's default."""
    bucket: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$")
    prefix: str = Field(default="platproxy/", pattern=r"^([A-Za-z0-9._/-]*/)?$")
    """Every key platproxy writes starts with this (ends with ``/``)."""
    region: str = "us-east-1"
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    """``path`` (endpoint/bucket/key: Ceph RGW, MinIO) or ``virtual`` (bucket.endpoint/key: AWS's preference)."""
    access_key: str = ""
    """Empty: botocore's usual chain (``AWS_ACCESS_KEY_ID``, profiles, instance roles)."""
    secret_key: str = Field(default="", repr=False)
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

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise ValueError(f"plain http to {parts.hostname} is refused for the store; use https")
        return value.rstrip("/")

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
