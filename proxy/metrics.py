"""Prometheus metrics (prometheus-client), one registry per application.

Names answer the operator's questions: how much is served from cache (``cache_outcomes``),
what the upstreams cost (``upstream_*``, ``bytes_fetched``), which platforms this node resolves
to (``resolutions``), and whether the disk budget holds (``cache_size_bytes``, ``evictions``).

May import: nothing of platproxy.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "platproxy_requests", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r
        )
        self.cache_outcomes = Counter(
            "platproxy_cache_outcomes",
            "Manifest and blob answers by cache outcome (hit, miss, revalidated, stale, coalesced)",
            ["kind", "outcome"],
            registry=r,
        )
        self.bytes_served = Counter("platproxy_bytes_served", "Body bytes sent to clients", ["route"], registry=r)
        self.bytes_fetched = Counter(
            "platproxy_bytes_fetched", "Body bytes received from upstreams", ["upstream"], registry=r
        )
        self.coalesced = Counter(
            "platproxy_coalesced_waiters", "Blob requests that joined a fill already in flight", registry=r
        )
        self.stale = Counter("platproxy_stale_serves", "Tags served from cache because the upstream failed", registry=r)
        self.upstream_latency = Histogram(
            "platproxy_upstream_request_seconds",
            "Time to the upstream's response headers",
            ["upstream"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.upstream_errors = Counter(
            "platproxy_upstream_errors", "Upstream failures by kind (unreachable, 4xx, 429, 5xx)", ["upstream", "kind"],
            registry=r,
        )  # fmt: skip
        self.resolutions = Counter(
            "platproxy_resolutions", "Tags resolved from a list/index, by chosen platform and rank label",
            ["platform", "label"], registry=r,
        )  # fmt: skip
        self.emulated = Counter(
            "platproxy_emulated_resolutions", "Tags resolved to a platform only emulation (binfmt_misc) runs",
            registry=r,
        )  # fmt: skip
        self.targets = Counter(
            "platproxy_tag_targets", "Tag requests by whose platform they were resolved for "
            "(selector, tool, proxy, node, rule, registration, user-agent, host, guess, unknown client)", ["source"],
            registry=r,
        )  # fmt: skip
        self.conversions = Counter(
            "platproxy_conversions", "Manifests converted for clients that cannot read the original, by kind "
            "(schema2, schema1)", ["kind"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "platproxy_request_seconds", "Time to answer a client, by route (a blob: until its last byte is sent)",
            ["route"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
            registry=r,
        )  # fmt: skip
        self.fills_in_flight = Gauge(
            "platproxy_fills_in_flight", "Blobs being fetched from an upstream right now", registry=r
        )
        self.cache_size = Gauge("platproxy_cache_size_bytes", "Bytes of content in the cache", registry=r)
        self.evictions = Counter("platproxy_evictions", "Content evicted to stay within cache.max_size", registry=r)
        self.evicted_bytes = Counter(
            "platproxy_evicted_bytes", "Bytes evicted to stay within cache.max_size", registry=r
        )
        self.store_requests = Counter(
            "platproxy_store_requests", "Requests to the shared store by operation and outcome "
            "(ok, missing, conflict, error, unreachable)", ["operation", "outcome"], registry=r,
        )  # fmt: skip
        self.leases = Counter(
            "platproxy_lease", "Fill leases in the shared store: acquired, taken_over, held (waited), lost",
            ["outcome"], registry=r,
        )  # fmt: skip

        self.node_checks = Counter(
            "platproxy_node_checks", "Node checks: nonces issued, canary requests answered (manifest, blob), "
            "results read", ["event"], registry=r,
        )  # fmt: skip
        self.fleet_images = Gauge(
            "platproxy_fleet_images", "Images whose latest pull on a platform had this outcome (native, variant "
            "fallback, lower level, 32-bit compat, emulated, missing)", ["outcome", "platform"], registry=r,
        )  # fmt: skip
        self.node_registrations = Gauge(
            "platproxy_node_registrations", "Nodes whose registered platform places their pulls", registry=r
        )

    def upstream_error(self, upstream: str, status: int | None) -> None:
        if status is None:
            kind = "unreachable"
        elif status == 429:
            kind = "429"
        else:
            kind = f"{status // 100}xx"
        self.upstream_errors.labels(upstream, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
