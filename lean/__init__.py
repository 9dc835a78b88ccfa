"""lean: LEAN on-device audio tagging (arXiv 2305.12712). Importing it does no I/O."""

__version__ = "0.1.0"
