"""arclib: the ARC ablation workbook."""

__version__ = "0.1.0"
