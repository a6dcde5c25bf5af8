"""The client of upstream registries (``client``): auth (bearer tokens, basic, or each client's
own with ``auth = "passthrough"``), redirects without leaking credentials, errors as
``UpstreamError``; challenges, client credentials and token caches (``credentials``); and the
resolver's content source for the command line (``source``).  Fill workers copy blob bodies off
the event loop with ``proxy.wire``.  Its HTTP session can be injected
(tests run it against an in-process registry).

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.wire, proxy.oci, proxy.config.
"""
