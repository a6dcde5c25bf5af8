"""Every real dump in tests/data/hostinfo gives its expected platform and features.

Run through the real CLI (``python -m hostinfo --cpuinfo ... --machine ...``), as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent.parent / "data" / "hostinfo"
CASES = sorted(p for p in CORPUS.iterdir() if (p / "expected.json").exists())


def run_hostinfo(case: Path) -> dict[str, object]:
    args = [sys.executable, "-m", "hostinfo", "--cpuinfo", str(case / "cpuinfo")]
    args += ["--machine", (case / "uname_m").read_text().strip()]
    if (case / "byteorder").exists():
        args += ["--byteorder", (case / "byteorder").read_text().strip()]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_corpus_is_complete() -> None:
    assert len(CASES) == 73


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    got = run_hostinfo(case)
    assert (got["os"], got["architecture"], got["variant"]) == (
        expected["os"],
        expected["architecture"],
        expected["variant"],
    )
    missing = set(expected["features"]) - set(got["features"])  # type: ignore[arg-type]
    assert not missing, f"features not reported: {sorted(missing)}"
    assert got["sources"]["architecture"]  # type: ignore[index]
    if expected["variant"]:
        assert "variant" in got["sources"]  # type: ignore[operator]
    runs = got["runs"]
    assert runs[0]["platform"].startswith(f"linux/{expected['architecture']}")  # type: ignore[index]
    detail = expected.get("variant_detail")
    if detail and expected["architecture"] in ("ppc64le", "ppc64"):
        assert got["details"]["level"] == detail  # type: ignore[index]
    if detail and expected["architecture"] == "arm64":
        assert got["details"]["level"] == detail  # type: ignore[index]
