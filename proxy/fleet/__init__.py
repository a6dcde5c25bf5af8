"""The fleet view: what every node pulled, what it got, and what would run where.

Each resolution the mirror makes is one observation (``FleetRecord`` in ``proxy.storage``):
the image, the target platform and how it was placed, and the outcome, classified here
(``outcomes``: native, variant fallback, lower level, 32-bit compat, emulated, missing).  The
report (``report``) turns the records into a matrix of image x platform with a summary per
platform, filtered; ``whatif`` evaluates the cached indexes for platforms the fleet does not run
yet, with the mirror's own resolver; ``page`` is the self-contained HTML page that draws the
report.  All pure: the command line and the HTTP edge read the records and the store.

May import: hostinfo, proxy.errors, proxy.oci, proxy.storage.records.
"""
