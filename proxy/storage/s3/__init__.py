"""The S3 backend: the bucket client (``bucket``), fill leases (``lease``), multipart uploads
that follow a fill (``upload``), the store itself (``store``), streaming from the replica that
holds a fill's lease (``peers``), pull times reported in batches (``pulls``) and the bucket's
collection (``retention`` decides, ``collect`` lists and removes).  aiobotocore is imported only
when a bucket is opened (the ``s3`` extra).

May import: proxy.errors, proxy.sizes, proxy.metrics, proxy.wire, proxy.oci, proxy.config, proxy.storage.
"""
