"""dupdetect: find duplicate and near-duplicate images, self-hosted."""

__version__ = "0.1.0"
