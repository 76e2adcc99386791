"""Tiny random-weight transformers models for tests and examples (no download needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(directory: str | Path, texts: Iterable[str] = (), hidden_size: int = 32,
                   layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised BERT (a few thousand parameters) plus a word-level vocab built
    from ``texts`` to ``directory``; the folder loads like any local transformers backbone."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    words: dict[str, None] = {}
    for text in texts:
        for w in re.findall(r"\w+|[^\w\s]", text.lower()):
            words.setdefault(w, None)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = SPECIAL + [w for w in letters if w not in words] + list(words)
    vocab += ["##" + c for c in letters]
    vocab_dict = {tok: i for i, tok in enumerate(dict.fromkeys(vocab))}
    tokenizer = BertTokenizer(vocab=vocab_dict, do_lower_case=True)
    tokenizer.model_max_length = 128
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab_dict), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden_size * 2,
                        max_position_embeddings=128)
    from .backbone import quiet_transformers

    quiet_transformers()
    BertModel(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
