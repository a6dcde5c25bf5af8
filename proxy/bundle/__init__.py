"""Bundles for air-gapped and edge sites: OCI Image Layouts trimmed to the platforms that run
there.  What an image keeps (``select``: the index's original bytes, the chosen children, their
attestations; pure) and the layout itself (``layout``: a directory, a ``.tar`` or a ``.tar.zst``,
written and read as a stream, every blob hashed on the way in).  The command line
(``proxy.cli.bundle``) reads the cache and the upstream, and seeds a cache from a bundle.

May import: hostinfo, proxy.errors, proxy.oci, proxy.sizes.
"""
