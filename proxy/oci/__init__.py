"""The OCI domain: names, tags and digests (``names``), media types and what a client accepts
(``mediatypes``), hashing against digests (``digests``), reading descriptors (``descriptors``),
and the resolver that picks one entry of a list for a host (``resolve``).  Pure functions and
plain models: no I/O, no HTTP, no storage.

May import: hostinfo, proxy.errors, proxy.sizes.
"""
