"""The pull services: which upstream serves a name and which platform it selects (``route``),
whose platform a request is resolved for (``targets``), tag pulls with freshness, stale
serving and resolution (``manifests``, ``freshness``), manifests by digest (``content``), the
forms old engines read, made once and kept (``conversions``, ``signing``), and blobs with
single-flight fills streamed to every waiting client (``blobs``, ``fills``) and what a fill
may take (``pace``), which repository of which upstream holds what (``members``), who may have
what of an upstream that takes each client's own credentials (``access``), what the mirror
may fetch and serve at all (``policy``), nodes that registered their platform
(``registrations``), the node check's canary (``canary``), indexes whose children are partly
absent (``sparse``), and every resolution counted for the fleet view (``fleetlog``).  They know
stores and upstreams only through their interfaces, and nothing of HTTP, sockets or threads
(``tests/test_architecture.py`` checks).

May import: hostinfo, proxy.errors, proxy.sizes, proxy.metrics,
proxy.oci, proxy.config, proxy.registry, proxy.storage, proxy.fleet.
"""
