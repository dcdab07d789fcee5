"""dupdetect: find duplicate and near-duplicate images, self-hosted."""

from importlib.metadata import version

__version__ = version("dupdetect")
"""The one version: pyproject.toml's, as installed (``dupdetect --version``, /schema, User-Agent)."""
