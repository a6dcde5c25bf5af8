"""The HTTP edge: the aiohttp application and its wiring (``app``), thin handlers (``handlers``),
the blob endpoint and every way a blob's body is sent or cut (``blobs``), the port other
replicas stream a fill in progress from (``peer``), the one mapping of domain errors to statuses
and OCI codes (``errors``), byte ranges (``ranges``), client authentication (``auth``), the
challenges, token relay and access check of ``auth = "passthrough"`` upstreams
(``passthrough``), what the application holds for its handlers (``keys``), what each request
did, for its access-log line (``record``), TLS on the listener with certificate rotation
(``tls``), node registration and checks (``nodes``), the fleet page and its data (``fleet``),
the header timeout (``guard``) and the health and metrics endpoints (``health``).

May import: hostinfo, proxy.errors, proxy.sizes, proxy.sending, proxy.tlsrelay, proxy.metrics, proxy.logs,
proxy.oci, proxy.config, proxy.registry, proxy.storage, proxy.pull, proxy.fleet.
"""
