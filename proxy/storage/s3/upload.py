"""Uploading a staging file to the bucket, while the fill is still writing it if we like.

A replica that holds a fill's lease uploads each full part as soon as the fill has written it,
so the upload runs alongside the download instead of after it; the other replicas, which wait
for the object, see it about one part after the last byte arrived instead of a whole upload
later.  The multipart upload is only *completed* after the digest was verified, and until it
is completed nothing is visible under the key: "written only after verification" holds.
Parts are read back from the staging file (a descriptor held open, so the file may be unlinked
meanwhile); at most ``UPLOADS_AT_ONCE`` parts per replica are in memory at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from proxy.storage.s3.bucket import Bucket

UPLOADS_AT_ONCE = 4
"""Parts (or small objects) being sent at once per replica: bounds upload memory to 4 x part_size
however many fills finish together."""


class Upload:
    """One object's upload from a staging file that may still be growing."""

    def __init__(self, bucket: Bucket, key: str, path: Path, slots: asyncio.Semaphore) -> None:
        self.store = bucket
        self.key = key
        self.part = bucket.config.part_size
        self.slots = slots
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.sent = 0
        """Bytes already sent as full parts."""
        self._fd = os.open(path, os.O_RDONLY)

    async def _read(self, length: int) -> bytes:
        return await asyncio.to_thread(os.pread, self._fd, length, self.sent)

    async def send_full_parts(self, available: int) -> None:
        """Send every whole part of the first ``available`` bytes not sent yet."""
        while available - self.sent >= self.part:
            await self._send_part(self.part)

    async def _send_part(self, length: int) -> None:
        if self.upload_id is None:
            made = await self.store.call("create_multipart_upload", Key=self.key,
                                         ContentType="application/octet-stream")  # fmt: skip
            self.upload_id = str(made["UploadId"])
        async with self.slots:
            data = await self._read(length)
            sent = await self.store.call("upload_part", Key=self.key, UploadId=self.upload_id,
                                         PartNumber=len(self.parts) + 1, Body=data)  # fmt: skip
        self.parts.append({"PartNumber": len(self.parts) + 1, "ETag": sent["ETag"]})
        self.sent += length

    async def finish(self, size: int) -> None:
        """Send the rest and make the object visible (call only once the digest is verified)."""
        try:
            if self.upload_id is None and size <= self.part:
                async with self.slots:
                    data = await self._read(size)
                    await self.store.call("put_object", Key=self.key, Body=data,
                                          ContentType="application/octet-stream")  # fmt: skip
                return
            await self.send_full_parts(size)
            if size > self.sent:
                await self._send_part(size - self.sent)
            await self.store.call("complete_multipart_upload", Key=self.key, UploadId=self.upload_id,
                                  MultipartUpload={"Parts": self.parts})  # fmt: skip
            self.upload_id = None
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Drop an unfinished multipart upload (its parts were never visible) and the descriptor."""
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            with contextlib.suppress(Exception):
                await self.store.call("abort_multipart_upload", Key=self.key, UploadId=upload_id)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
