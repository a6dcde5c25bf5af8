"""The S3 backend: the bucket client (``bucket``), fill leases (``lease``), multipart uploads
that follow a fill (``upload``) and the store itself (``store``).  aiobotocore is imported only
when a bucket is opened (the ``s3`` extra).

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.oci, proxy.config, proxy.storage.
"""
