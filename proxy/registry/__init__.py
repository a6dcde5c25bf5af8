"""The client of upstream registries (``client``): auth (bearer tokens, basic, or each client's
own with ``auth = "passthrough"``), redirects without leaking credentials, errors as
``UpstreamError``; challenges, client credentials and token caches (``credentials``); blocking
HTTP for fill workers, which copy blob bodies off the event loop (``wire``); and the resolver's
content source for the command line (``source``).  Its HTTP session can be injected
(tests run it against an in-process registry).

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.oci, proxy.config.
"""
