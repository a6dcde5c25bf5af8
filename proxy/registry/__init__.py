"""The client of upstream registries (``client``): auth (bearer tokens, basic), redirects
without leaking credentials, errors as ``UpstreamError``, and the resolver's content source for
the command line.  Its HTTP session can be injected (tests run it against an in-process registry).

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.oci, proxy.config.
"""
