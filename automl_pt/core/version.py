"""The package version (``automl_pt.__version__``), here so that low layers can record it."""

__version__ = "0.1.0"
