"""Training a model: batch order, the fine-tuning loop, the closed-form probe, strategies
(adapters, partial)."""
