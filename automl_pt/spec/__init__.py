"""The study specification: the study file (config, presets) and the data it names."""
