"""Family of audio tagging models, built by name through `registry`."""
