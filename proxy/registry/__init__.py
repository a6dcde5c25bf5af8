"""The client of upstream registries (``client``): redirects without leaking credentials, errors
as ``UpstreamError``, blob bodies read by fill workers with ``proxy.wire``; auth (``auth``:
bearer tokens, basic, or each client's own with ``auth = "passthrough"``, and where credentials
may go, decided without HTTP); challenges, client credentials and token caches
(``credentials``); and the resolver's content source for the command line (``source``).  Its
HTTP session can be injected (tests run it against an in-process registry).

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.wire, proxy.oci, proxy.config.
"""
