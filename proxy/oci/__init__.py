"""The OCI domain: names, tags and digests (``names``), media types and what a client accepts
(``mediatypes``), hashing against digests (``digests``), reading descriptors (``descriptors``),
the resolver that picks one entry of a list for a host (``resolve``), what a client reads
(``clients``), and the conversions for old engines: Docker schema 2 (``convert``), schema 1 as
Distribution built it (``schema1``, with Go's JSON bytes from ``gojson``) and its libtrust
signature (``jws``).  Pure functions and plain models: no I/O, no HTTP, no storage.

May import: hostinfo, proxy.errors, proxy.sizes.
"""
