"""Bench lines for private images (``auth = "passthrough"``): what the access check costs.

One platproxy in front of a real Distribution with token auth (``tests/tokenserver.py``): a
cached tag of a private repository, requested with a token whose yes is remembered, against a
cached tag of a public repository of the same upstream (the fast path every client gets).
The target (issue: private images) is a private rate within 1.1x of the public one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.run import PlatproxyServer, wrk
from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from tests.indexes import Case
from tests.registry import request
from tests.tokenserver import TokenUpstream, passthrough_config

PUBLIC = "manifest by tag, cached, public repository, passthrough upstream, c=64 (req/s)"
PRIVATE = "manifest by tag, cached, private, authorization remembered, c=64 (req/s)"
RATIO = "public / private cached tag rate (x; target at most 1.1)"


def section(work: Path, record: Callable[[str, str, float], None], reps: int, seconds: int, case: Case) -> None:
    upstream = TokenUpstream.start(work / "tokenauth", case, ("team-a/small:1", "public/small:1"))
    (work / "pp-private").mkdir()
    server = PlatproxyServer(work / "pp-private", "", passthrough_config(upstream.registry)).start()
    try:
        token = upstream.tokens.token("alice", "repository:team-a/small:pull")
        private = {"Authorization": f"Bearer {token}", "Accept": UPSTREAM_ACCEPT}
        for path, headers in (("/v2/public/small/manifests/1", {"Accept": UPSTREAM_ACCEPT}),
                              ("/v2/team-a/small/manifests/1", private)):  # fmt: skip
            status, _, body = request(server.port, "GET", path, headers=headers)
            assert status == 200, (path, status, body[:300])  # cached, and the answers remembered
        for _ in range(reps):
            public_rate, _ = wrk(f"http://{server.address}/v2/public/small/manifests/1", seconds)
            private_rate, _ = wrk(f"http://{server.address}/v2/team-a/small/manifests/1", seconds,
                                  headers=[f"Authorization: Bearer {token}"])  # fmt: skip
            record(PUBLIC, "platproxy", public_rate)
            record(PRIVATE, "platproxy", private_rate)
            record(RATIO, "platproxy", public_rate / private_rate)
    finally:
        server.stop()
        upstream.stop()
