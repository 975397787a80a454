"""cass-cdc-pg operator: reconciles CdcPipeline and TableReplication resources.

Kopf handlers stay thin; pure builders turn specs into manifests and separate
appliers do the I/O, so the logic can be tested without a cluster.
"""

__version__ = "0.1.0"
