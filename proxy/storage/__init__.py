"""Storage: the ``Store`` interface (``base``) and its backends (``files``, ``memory``, ``s3``),
staging files and fills (``staging``), the record types (``records``), tag records local and
shared (``tagindex``, ``sharedtags``, ``tags``), node registrations (``nodes``), fleet records
(``fleet``), the disk budget (``budget``), and the one factory that picks a backend from the
config (``factory``).  Nothing is kept under a digest before it matched.

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.oci, proxy.config.
"""
