"""Exported models: the best trial written to a model folder, the predictor that loads it, the
export formats and model cards, provenance checks."""
