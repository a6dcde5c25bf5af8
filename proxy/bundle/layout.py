"""An OCI Image Layout (image-spec ``image-layout.md``) as a directory, a ``.tar`` or a
``.tar.zst``: ``oci-layout``, ``index.json`` and ``blobs/<algorithm>/<hex>``.

Written as a stream (a tar is never held in memory, blobs are copied from files), with fixed
metadata (owner 0, mode 0644, time 0) so that the same content makes the same archive.  Read as
a stream too: ``members`` yields each file once, in archive order, so a bundle is verified in one
pass and imported in a second, whatever its size.  ``.tar.zst`` needs the ``zstandard`` package
(``pip install 'platproxy[zstd]'``).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

LAYOUT = {"imageLayoutVersion": "1.0.0"}
BLOBS = "blobs/"


class LayoutError(ValueError):
    """A path that is not a layout this reads or writes; the message says why."""


def kind_of(path: Path) -> str:
    name = path.name
    if name.endswith(".tar.zst"):
        return "tar.zst"
    if name.endswith(".tar"):
        return "tar"
    return "dir"


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise LayoutError(".tar.zst needs the zstandard package: pip install 'platproxy[zstd]'") from None
    return zstandard


def blob_name(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"{BLOBS}{algorithm}/{encoded}"


def digest_of_name(name: str) -> str | None:
    """``blobs/sha256/<hex>`` -> ``sha256:<hex>`` (``None`` for any other name)."""
    parts = name.removeprefix("./").split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] and parts[2]:
        return f"{parts[1]}:{parts[2]}"
    return None


class LayoutWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = kind_of(path)
        self._file: IO[bytes] | None = None
        self._compressor: Any = None
        self._tar: tarfile.TarFile | None = None
        self.written: set[str] = set()
        if self.kind == "dir":
            if path.exists() and any(path.iterdir()):
                raise LayoutError(f"{path} exists and is not empty")
            (path / "blobs").mkdir(parents=True, exist_ok=True)
        else:
            self._file = path.open("xb")
            out: IO[bytes] = self._file
            if self.kind == "tar.zst":
                self._compressor = _zstd().ZstdCompressor(level=10, threads=-1).stream_writer(self._file)
                out = self._compressor
            self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (finish closes it)

    def _add(self, name: str, size: int, source: IO[bytes]) -> None:
        if self._tar is None:
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            return
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.uid, info.gid = size, 0o644, 0, 0, 0
        self._tar.addfile(info, source)

    def add_file(self, digest: str, path: Path) -> None:
        """A blob from a local file (already verified against ``digest``), once."""
        if digest in self.written:
            return
        with path.open("rb") as source:
            self._add(blob_name(digest), path.stat().st_size, source)
        self.written.add(digest)

    def add_bytes(self, digest: str, data: bytes) -> None:
        if digest not in self.written:
            self._add(blob_name(digest), len(data), io.BytesIO(data))
            self.written.add(digest)

    def finish(self, index: dict[str, Any]) -> None:
        for name, doc in (("oci-layout", LAYOUT), ("index.json", index)):
            data = json.dumps(doc, indent=2).encode()
            self._add(name, len(data), io.BytesIO(data))
        if self._tar is not None:
            self._tar.close()
        if self._compressor is not None:
            self._compressor.close()
        elif self._file is not None:
            self._file.close()

    def abort(self) -> None:
        """Remove what was written (a failed export leaves nothing behind)."""
        for closing in (self._tar, self._compressor, self._file):
            try:
                if closing is not None:
                    closing.close()
            except (OSError, ValueError):
                pass
        if self.kind == "dir":
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


def members(path: Path) -> Iterator[tuple[str, int, IO[bytes]]]:
    """Every file of the layout at ``path`` as ``(name, size, readable)``, in order, once."""
    kind = kind_of(path)
    if kind == "dir":
        if not (path / "index.json").is_file():
            raise LayoutError(f"{path} is not an OCI layout (no index.json)")
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            with file.open("rb") as readable:
                yield file.relative_to(path).as_posix(), file.stat().st_size, readable
        return
    if not path.is_file():
        raise LayoutError(f"{path}: no such file")
    with path.open("rb") as raw:
        source: Any = _zstd().ZstdDecompressor().stream_reader(raw) if kind == "tar.zst" else raw
        try:
            with tarfile.open(fileobj=source, mode="r|") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    member = tar.extractfile(info)
                    if member is not None:
                        yield info.name.removeprefix("./"), info.size, member
        except tarfile.TarError as exc:
            raise LayoutError(f"{path} is not a tar archive of an OCI layout: {exc}") from None


def blob_digests(path: Path) -> set[str]:
    """The digests of every blob an earlier bundle holds (for ``--since``)."""
    return {d for name, _, _ in members(path) if (d := digest_of_name(name)) is not None}
