"""lean: on-device audio classification, LEAN (arXiv 2305.12712) and related families. Importing
it does no I/O."""

__version__ = "0.1.0"
