"""Bench lines for private images (``auth = "passthrough"``): what the access check costs.

One platproxy in front of a real Distribution with token auth (``tests/tokenserver.py``): a
cached tag of a private repository, requested with a token whose yes is remembered, against a
cached tag of a public repository of the same upstream, requested as every client of it does
(Docker, containerd and skopeo all follow the ``/v2/`` challenge and fetch a token first: the
anonymous token the relay hands out).  The target (issue: private images) is a private rate
within 1.1x of the public one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bench.servers import PlatproxyServer, wrk
from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from tests.indexes import Case
from tests.registry import request
from tests.tokenserver import TokenUpstream, passthrough_config

PUBLIC = "manifest by tag, cached, public repository (anonymous token), passthrough upstream, c=64 (req/s)"
PRIVATE = "manifest by tag, cached, private, authorization remembered, c=64 (req/s)"
RATIO = "public / private cached tag rate (x; target at most 1.1)"


def section(work: Path, record: Callable[[str, str, float], None], reps: int, seconds: int, case: Case) -> None:
    upstream = TokenUpstream.start(work / "tokenauth", case, ("team-a/small:1", "public/small:1"))
    (work / "pp-private").mkdir()
    server = PlatproxyServer(work / "pp-private", "", passthrough_config(upstream.registry)).start()
    try:
        token = upstream.tokens.token("alice", "repository:team-a/small:pull")
        status, _, body = request(server.port, "GET", "/auth/token?scope=repository:public/small:pull")
        assert status == 200, body[:300]
        anonymous = json.loads(body)["token"]
        for path, bearer in (("/v2/public/small/manifests/1", anonymous), ("/v2/team-a/small/manifests/1", token)):
            headers = {"Authorization": f"Bearer {bearer}", "Accept": UPSTREAM_ACCEPT}
            status, _, body = request(server.port, "GET", path, headers=headers)
            assert status == 200, (path, status, body[:300])  # cached, and the answers remembered
        urls = {
            "public": (f"http://{server.address}/v2/public/small/manifests/1", anonymous),
            "private": (f"http://{server.address}/v2/team-a/small/manifests/1", token),
        }
        for rep in range(reps):
            rates: dict[str, float] = {}
            for which in ("public", "private") if rep % 2 == 0 else ("private", "public"):  # no order bias
                url, bearer = urls[which]
                rates[which] = wrk(url, seconds, headers=[f"Authorization: Bearer {bearer}"])[0]
            record(PUBLIC, "platproxy", rates["public"])
            record(PRIVATE, "platproxy", rates["private"])
            record(RATIO, "platproxy", rates["public"] / rates["private"])
    finally:
        server.stop()
        upstream.stop()
