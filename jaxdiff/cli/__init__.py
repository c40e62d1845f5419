"""Command-line entry points of ``jaxdiff``."""
