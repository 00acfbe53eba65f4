"""qc-pipeline: quality control gating the mutual recognition of DR, CT and MR studies."""

__version__ = "0.2.0"

__all__ = ["__version__"]
