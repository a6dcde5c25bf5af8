"""The fleet view's pure parts: outcomes, merging records across replicas, the report's matrix,
summary, filters and gate, and the records' encoding (a newer version is refused, not misread)."""

from __future__ import annotations

import pytest

from proxy.fleet.outcomes import classify
from proxy.fleet.report import build
from proxy.storage.fleet import FleetError, decode, encode, merge
from proxy.storage.records import FleetRecord


@pytest.mark.parametrize(
    ("target", "chosen", "label", "shown"),
    [
        ("linux/arm/v7", "linux/arm/v7", "native", "native"),
        ("linux/arm/v7", "linux/arm/v6", "lower level", "variant fallback (v7 node got v6)"),
        ("linux/amd64/v3", "linux/amd64", "baseline", "lower level (v3 host got v1)"),
        ("linux/amd64/v3", "linux/amd64/v2", "lower level", "lower level (v3 host got v2)"),
        ("linux/arm64/v8", "linux/arm/v7", "32-bit compat (AArch32)", "32-bit compat (arm64 node got linux/arm/v7)"),
        ("linux/amd64", "linux/arm64/v8", "emulated", "emulated (linux/arm64/v8 on linux/amd64)"),
        ("linux/arm/v7", None, "", "missing"),
    ],
)
def test_outcomes(target: str, chosen: str | None, label: str, shown: str) -> None:
    assert str(classify(target, chosen, label)) == shown


def record(image: str, platform: str, outcome: str, first: float, last: float, count: int, **kw: str) -> FleetRecord:
    return FleetRecord(image, platform, outcome, kw.get("detail", ""), kw.get("source", "node"), "sha256:i", "", "",
                       "", first, last, count)  # fmt: skip


def test_replicas_merge_into_one_record_per_image_platform_outcome() -> None:
    a = record("docker.io/library/x:1", "linux/arm/v7", "native", 10, 20, 2)
    b = record("docker.io/library/x:1", "linux/arm/v7", "native", 5, 15, 3, source="registration")
    (merged,) = merge([a, b])
    assert (merged.count, merged.first_seen, merged.last_seen, merged.source) == (5, 5, 20, "node")


def test_the_report_shows_each_platforms_latest_outcome_with_every_count_and_filters() -> None:
    records = [
        record("docker.io/library/x:1", "linux/arm/v7", "missing", 1, 5, 1),
        record("docker.io/library/x:1", "linux/arm/v7", "native", 6, 9, 4),  # fixed upstream since
        record("docker.io/library/x:1", "linux/amd64", "native", 1, 9, 7),
        record("ghcr.io/o/y:2", "linux/arm/v7", "variant fallback", 1, 9, 1, detail="v7 node got v6"),
    ]
    report = build(records, now=10)
    cell = report.images["docker.io/library/x:1"]["linux/arm/v7"]
    assert (cell.outcome, cell.count, cell.counts) == ("native", 5, {"missing": 1, "native": 4})
    assert report.summary() == {"linux/amd64": {"native": 1, "degraded": 0, "missing": 0, "unknown": 0},
                                "linux/arm/v7": {"native": 1, "degraded": 1, "missing": 0, "unknown": 0}}  # fmt: skip
    assert [i for i, _, _ in report.offending("degraded")] == ["ghcr.io/o/y:2"] and report.offending("missing") == []
    assert list(build(records, images="docker.io/*").images) == ["docker.io/library/x:1"]
    assert list(build(records, outcomes=("variant fallback",)).images) == ["ghcr.io/o/y:2"]
    assert build(records, platforms=("linux/amd64",)).platforms == ["linux/amd64"]
    assert build(records, since=9.5).images == {}


def test_records_round_trip_and_a_newer_version_is_refused_by_name() -> None:
    records = [record("docker.io/library/x:1", "linux/arm/v7", "native", 1, 2, 3)]
    assert decode(encode(records), "k") == records
    with pytest.raises(FleetError, match="newer platproxy"):
        decode(encode(records).replace(b'"version":1', b'"version":2'), "fleet/r.json")
    for bad in (b"{", b"[]", b'{"version": 1, "records": [[1, 2]]}'):
        with pytest.raises(FleetError, match=r"fleet/r\.json"):
            decode(bad, "fleet/r.json")


def test_the_gauge_counts_each_images_latest_outcome_per_platform() -> None:
    import asyncio
    import sqlite3

    from proxy.fleet.outcomes import Outcome
    from proxy.metrics import Metrics
    from proxy.pull.fleetlog import FleetLog
    from proxy.storage.fleet import FleetRecords

    now = [1.0]
    metrics = Metrics()
    log = FleetLog(FleetRecords(sqlite3.connect(":memory:")), metrics, clock=lambda: now[0])
    log.note("docker.io/a:1", "linux/arm/v7", "node", Outcome("missing"))
    now[0] = 2.0
    log.note("docker.io/a:1", "linux/arm/v7", "node", Outcome("native"))  # fixed since: counted as native
    log.note("docker.io/b:1", "linux/arm/v7", "node", Outcome("variant fallback", "v7 node got v6"))
    asyncio.run(log.flush())
    shown = [line for line in metrics.render().decode().splitlines() if line.startswith("platproxy_fleet_images")]
    assert sorted(shown) == [
        'platproxy_fleet_images{outcome="native",platform="linux/arm/v7"} 1.0',
        'platproxy_fleet_images{outcome="variant fallback",platform="linux/arm/v7"} 1.0',
    ]
