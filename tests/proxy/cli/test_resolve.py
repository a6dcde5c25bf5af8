"""``platproxy resolve --index``: output, exit codes and bad input, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import indexes
from tests.ocibuild import write_layout


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "resolve", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, indexes.Case]:
    case = indexes.goauthentik_nested()
    write_layout(tmp_path, case.top, case.blobs)
    return tmp_path, case


def test_json_decision(layout: tuple[Path, indexes.Case]) -> None:
    root, case = layout
    done = run(
        "--index", str(root / "index.json"), "--blobs", str(root / "blobs"), "--platform", "linux/arm64", "--json"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"chosen", "candidates", "rejected", "warnings"}
    assert set(out["chosen"]) >= {"digest", "mediaType", "platform", "rank", "label"}
    assert out["chosen"]["digest"] == case.digest_of("arm64")
    assert out["chosen"]["platform"] == "linux/arm64/v8" and out["chosen"]["label"] == "native"
    assert all(set(r) == {"digest", "platform", "reason"} for r in out["rejected"])


def test_nothing_fits_exits_1_with_the_table(layout: tuple[Path, indexes.Case]) -> None:
    root, _ = layout
    done = run("--index", str(root / "index.json"), "--blobs", str(root / "blobs"), "--platform", "linux/s390x")
    assert done.returncode == 1
    assert "nothing fits" in done.stdout and done.stdout.count("rejected") == 2


def test_without_blobs_a_nested_index_asks_for_blobs(layout: tuple[Path, indexes.Case]) -> None:
    root, _ = layout
    done = run("--index", str(root / "index.json"), "--platform", "linux/amd64", "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"platproxy resolve: {root / 'index.json'}: 1 entry needs the layout's content (a nested "
                           "index, or an entry without a platform): pass --blobs DIR (the blobs/ folder beside "
                           "index.json)\n")  # fmt: skip


def test_a_warning_names_the_entry_it_is_about(tmp_path: Path) -> None:
    case = indexes.amd64_levels()
    top = json.loads(case.top.data)
    windows = {**top["manifests"][0], "platform": {"os": "windows", "architecture": "amd64"}}
    top["manifests"].append(windows)
    (tmp_path / "index.json").write_text(json.dumps(top))
    done = run("--index", str(tmp_path / "index.json"), "--platform", "linux/amd64/v3", "--json")
    warnings = json.loads(done.stdout)["warnings"]
    assert not any("windows" in w for w in warnings)  # no amd64 levels among windows siblings: nothing to say
    top["manifests"].append({**windows, "platform": {"os": "windows", "architecture": "amd64", "variant": "v2"}})
    (tmp_path / "index.json").write_text(json.dumps(top))
    done = run("--index", str(tmp_path / "index.json"), "--platform", "linux/amd64/v3", "--json")
    about_windows = [w for w in json.loads(done.stdout)["warnings"] if "has no variant" in w and "windows" in w]
    assert about_windows == [f"{windows['digest'][:19]} windows/amd64 has no variant and counts as v1 (baseline) "
                             "although its siblings carry levels"]  # fmt: skip


def test_features_and_windows_platforms(tmp_path: Path) -> None:
    case = indexes.windows_ltsc()
    write_layout(tmp_path, case.top, case.blobs)
    done = run("--index", str(tmp_path / "index.json"), "--platform", "windows(10.0.17763.5820)/amd64", "--json")
    assert json.loads(done.stdout)["chosen"]["digest"] == case.digest_of("ltsc2019")
    done = run("--index", str(tmp_path / "index.json"), "--platform", "linux/amd64/v3", "--features", "avx2,fma")
    assert done.returncode == 0


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        (b"{not json", (), "not valid JSON"),
        (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}', (), "not a manifest list"),
        (None, (), "cannot read"),
        (b'{"manifests": []}', ("--platform", "linux/arm/v7/x"), "bad --platform"),
        (b'{"manifests": []}', ("--features", "avx2"), "--features goes with --platform"),
        (b'{"manifests": []}', ("--platform", "linux/amd64", "--blobs", "/nonexistent-dir"), "not a folder"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, content: bytes | None, args: tuple[str, ...], needle: str) -> None:
    path = tmp_path / "index.json"
    if content is not None:
        path.write_bytes(content)
    done = run("--index", str(path), *args)
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_what_a_central_mirror_gives_a_client(layout: tuple[Path, indexes.Case], tmp_path: Path) -> None:
    """--user-agent / --client-ip answer "what would that node get, and why" with the mirror's rules."""
    root, case = layout
    rules = tmp_path / "rules.toml"
    rules.write_text('[[clients]]\ncidr = "10.3.0.0/16"\nplatform = "linux/arm64/v8"\n')
    index = ("--index", str(root / "index.json"), "--blobs", str(root / "blobs"), "--platform", "linux/amd64")
    by_agent = run(*index, "--user-agent", "docker/20.10.24 go/go1.19.8 os/linux arch/arm64")
    assert by_agent.returncode == 0 and "client: resolved for linux/arm64/v8 (user-agent)" in by_agent.stdout
    assert case.digest_of("arm64") in by_agent.stdout
    by_rule = run(*index, "--client-ip", "10.3.2.1", "--config", str(rules), "--json")
    assert json.loads(by_rule.stdout)["chosen"]["digest"] == case.digest_of("arm64")
    by_host = run(*index, "--client-ip", "127.0.0.1", "--config", str(rules), "--json")  # this host (a sidecar)
    assert json.loads(by_host.stdout)["chosen"]["digest"] == case.digest_of("amd64")
    unknown = run(*index, "--client-ip", "192.0.2.1", "--config", str(rules), "--json")  # a node nothing places
    assert json.loads(unknown.stdout)["index"] is True and "unknown client" in json.loads(unknown.stdout)["note"]
