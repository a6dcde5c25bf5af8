"""The files ``node setup`` writes, applied all or nothing and recorded so that ``node undo``
leaves the tree exactly as it was (byte for byte, directories included).

The record, ``<root>/var/lib/platproxy/node-setup.json``, keeps for each file what was there
before the first setup that touched it (``null``: nothing), every directory setup created, and
what setup did (``setup``: the mirror, runtimes, registries, platform, and whether the node
registered), which ``node check`` and ``node undo`` read.  A second setup that changes nothing
writes nothing, the record included.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD = Path("var/lib/platproxy/node-setup.json")


class ChangeError(OSError):
    """A file could not be written; whatever this run had written is back as it was."""


@dataclass(frozen=True)
class Change:
    path: Path
    text: str
    before: str | None
    """What the file held before this run (``None``: no such file)."""

    @property
    def needed(self) -> bool:
        return self.text != self.before


def planned(path: Path, text: str) -> Change:
    return Change(path, text, path.read_text() if path.exists() else None)


def apply(root: Path, changes: list[Change], setup: dict[str, Any] | None = None) -> list[Change]:
    """Write every needed change, or none: a failure puts back what this run wrote.  Returns the
    changes written; the record is updated with them (and with ``setup``, when it differs)."""
    todo = [c for c in changes if c.needed]
    record = _load(root)
    if not todo and (setup is None or setup == record.setup):
        return []
    if setup is not None:
        record.setup = setup
    written: list[Change] = []
    made: list[Path] = []
    try:
        for change in todo:
            made += _make_dirs(change.path.parent)
            _write(change.path, change.text)
            written.append(change)
            record.files.setdefault(str(change.path), change.before)
        record_path = root / RECORD
        made += _make_dirs(record_path.parent)
        record.dirs = sorted(set(record.dirs) | {str(d) for d in made})
        _write(record_path, json.dumps({"files": record.files, "dirs": record.dirs, "setup": record.setup},
                                       indent=2) + "\n")  # fmt: skip
    except OSError as exc:
        for change in reversed(written):
            _restore(change.path, change.before)
        for directory in reversed(made):
            _remove_dir(directory)
        raise ChangeError(exc.errno, f"cannot write {getattr(exc, 'filename', '') or 'a file'}: "
                                     f"{exc.strerror or exc}") from None  # fmt: skip
    return written


def recorded_setup(root: Path) -> dict[str, Any]:
    """What the last setup under ``root`` did (``{}``: none, or a record that cannot be read)."""
    try:
        return _load(root).setup
    except (OSError, ValueError):
        return {}


def undo(root: Path) -> list[str]:
    """Put back every file setup wrote and remove the directories it made; what was done."""
    record = _load(root)
    done = []
    for path, before in record.files.items():
        _restore(Path(path), before)
        done.append(f"{'restored' if before is not None else 'removed'} {path}")
    (root / RECORD).unlink(missing_ok=True)
    for directory in sorted(record.dirs, key=len, reverse=True):
        _remove_dir(Path(directory))
    return done


@dataclass
class Record:
    files: dict[str, str | None]
    """Each file written, and what it held before the first setup (``None``: nothing)."""
    dirs: list[str]
    """Each directory setup made."""
    setup: dict[str, Any] = field(default_factory=dict)
    """What setup did: mirror, runtimes, registries, platform, registered."""


def _load(root: Path) -> Record:
    path = root / RECORD
    if not path.exists():
        return Record({}, [])
    data = json.loads(path.read_text())
    setup = data.get("setup", {})
    return Record(dict(data.get("files", {})), list(data.get("dirs", [])), setup if isinstance(setup, dict) else {})


def _make_dirs(directory: Path) -> list[Path]:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _write(path: Path, text: str) -> None:
    """Atomically: a crash leaves the old file or the new one."""
    temporary = path.with_name(f".{path.name}.platproxy-tmp")
    temporary.write_text(text)
    if path.exists():
        os.chmod(temporary, path.stat().st_mode & 0o7777)
    os.replace(temporary, path)


def _restore(path: Path, before: str | None) -> None:
    if before is None:
        path.unlink(missing_ok=True)
    else:
        _write(path, before)


def _remove_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: something else lives there now
        directory.rmdir()
