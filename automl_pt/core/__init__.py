"""Leaf helpers that import nothing else of automl_pt but :mod:`automl_pt.errors`: atomic writes,
run-directory file names and the driver lock, devices and threads, random seeds, memory."""
