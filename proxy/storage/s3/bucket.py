"""The bucket: one S3 client for one bucket, with what every part of the S3 store needs from it.

Every request goes through ``call``, which turns "unreachable" and "refused" into
``StoreUnavailable`` (a 503 for the client, never a 500) and counts each request by outcome for
the metrics.  After the bucket was found unreachable, requests fail at once for ``DOWN_WINDOW``
seconds instead of each waiting through connection retries of its own.  aiobotocore is imported
only when the bucket is opened: it is the ``s3`` extra, and nothing else needs it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import structlog

from proxy.config import LimitsConfig, S3Config
from proxy.errors import StoreUnavailable

log = structlog.get_logger("platproxy.s3")

DOWN_WINDOW = 2.0
"""After the bucket was found unreachable, fail at once for this long instead of each request
waiting through connection retries of its own (a client gets its 503 promptly)."""

S3_EXTRA_MISSING = "\"s3\" needs the S3 client: pip install 'platproxy[s3]'"


def s3_client_missing() -> str:
    """Why the S3 store cannot be used on this installation (empty: it can), without importing it."""
    return "" if importlib.util.find_spec("aiobotocore") is not None else S3_EXTRA_MISSING


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_missing(exc: Exception) -> bool:
    return _status(exc) == 404 or _code(exc) in ("404", "NoSuchKey", "NotFound")


def lost_race(exc: Exception) -> bool:
    """412: the conditional write lost; 409: another conditional write to the key is in flight."""
    return _status(exc) in (409, 412) or _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict")


def blob_key(prefix: str, digest: str) -> str:
    """Where content lives in the bucket: ``<prefix>blobs/<algorithm>/<hex>`` (a checked digest)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{prefix}blobs/{algorithm}/{encoded}"


class Bucket:
    """The S3 client of one bucket (``config.bucket``)."""

    def __init__(self, config: S3Config, limits: LimitsConfig) -> None:
        self.config = config
        self.limits = limits
        self.on_call: Callable[[str, str], None] | None = None
        """Called with (operation, outcome) for every S3 request (the metrics listen)."""
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._down_until = 0.0
        self._down_reason = ""

    async def open(self) -> None:
        try:
            from aiobotocore.session import get_session
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise RuntimeError(S3_EXTRA_MISSING) from None
        c = self.config
        boto = BotoConfig(
            signature_version="s3v4", s3={"addressing_style": c.addressing_style},
            connect_timeout=self.limits.connect_timeout, read_timeout=self.limits.read_timeout,
            retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=64,
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )  # fmt: skip
        kwargs: dict[str, Any] = {"region_name": c.region, "config": boto, "verify": c.verify_tls}
        if c.endpoint:
            kwargs["endpoint_url"] = c.endpoint
        if c.access_key:
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = c.access_key, c.secret_key
        self._client = await self._stack.enter_async_context(get_session().create_client("s3", **kwargs))
        try:
            await self.call("head_bucket")
        except Exception as exc:  # not fatal: the bucket may come (back); /readyz says so meanwhile
            if is_missing(exc) or "NoSuchBucket" in str(exc):
                log.warning("the store is not usable yet", bucket=c.bucket, error=f"bucket {c.bucket} does not exist",
                            create_it=self.create_command())  # fmt: skip
            else:
                log.warning("the store is not usable yet", bucket=c.bucket, error=str(exc) or type(exc).__name__)

    def create_command(self) -> str:
        """The command that makes the configured bucket (platproxy never creates one itself)."""
        c = self.config
        endpoint = f" --endpoint-url {c.endpoint}" if c.endpoint else ""
        return f"aws{endpoint} --region {c.region} s3 mb s3://{c.bucket}"

    async def close(self) -> None:
        await self._stack.aclose()

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request on this bucket; unreachable or refused becomes ``StoreUnavailable``."""
        from botocore.exceptions import BotoCoreError, ClientError

        if time.monotonic() < self._down_until:
            self._count(operation, "unreachable")
            raise StoreUnavailable(f"the store is unreachable ({self._down_reason})")
        try:
            result = await getattr(self._client, operation)(Bucket=self.config.bucket, **kwargs)
        except ClientError as exc:
            outcome = "missing" if is_missing(exc) else "conflict" if lost_race(exc) else "error"
            if _code(exc) == "NoSuchBucket":  # a configuration problem, not a missing object
                outcome = "error"
            self._count(operation, outcome)
            if outcome != "error":
                raise
            raise StoreUnavailable(f"the store answered {_code(exc) or _status(exc)} to {operation}") from None
        except (TimeoutError, BotoCoreError, OSError) as exc:
            self._count(operation, "unreachable")
            self._down_until, self._down_reason = time.monotonic() + DOWN_WINDOW, f"{type(exc).__name__}: {exc}"
            raise StoreUnavailable(f"the store is unreachable: {self._down_reason}") from None
        self._count(operation, "ok")
        return result

    async def call_if_exists(self, operation: str, **kwargs: Any) -> Any | None:
        """``call``, or ``None`` when the object it reads does not exist."""
        try:
            return await self.call(operation, **kwargs)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    async def read(self, key: str) -> bytes | None:
        """A small object's bytes (a record, a lease, a batch), ``None`` when it does not exist."""
        resp = await self.call_if_exists("get_object", Key=key)
        if resp is None:
            return None
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    def _count(self, operation: str, outcome: str) -> None:
        if self.on_call is not None:
            self.on_call(operation, outcome)

    async def ping(self) -> str:
        """Empty when the bucket answers, else the reason."""
        try:
            await self.call("head_bucket")
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return ""

    async def presign(self, key: str) -> str:
        """A URL that lets its holder GET ``key`` for ``presign_ttl`` seconds, without our credentials."""
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.config.bucket, "Key": key},
            ExpiresIn=int(self.config.presign_ttl),
        )  # fmt: skip
        return url
