"""Subcommands of the `lean` CLI, one module each with `register(subparsers)`."""
