"""Transformers encoders as automl_pt backbones, and their tokenizer as the preprocessor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from automl_pt.errors import BackboneError
from automl_pt.model import Backbone, Preprocessor

DEFAULT_MAX_LENGTH = 256
#: without a fitted value, ``max_length`` is this percentile of the training texts' token counts
LENGTH_PERCENTILE = 99.0
PREPROCESSOR_FILE = "automl_pt_text_preprocessor.json"
# last name parts of transformers' attention projections: what LoRA adapts by default, and
# what (IA)^3 rescales (fused projections count as both)
_FUSED = {"qkv", "Wqkv", "query_key_value", "c_attn", "in_proj"}
QUERY_VALUE = {"query", "value", "q", "v", "q_proj", "v_proj", "q_lin", "v_lin", "query_proj",
               "value_proj", *_FUSED}
KEY_VALUE = {"key", "value", "k", "v", "k_proj", "v_proj", "k_lin", "v_lin", "key_proj",
             "value_proj", *_FUSED}


def tokenizer_key(tokenizer: Any) -> str:
    """A hash of everything the tokenizer does (its serialised pipeline, else its vocabulary):
    part of the fingerprint under which encoded inputs are cached."""
    try:
        content = tokenizer.backend_tokenizer.to_str()
    except AttributeError:
        content = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(content.encode()).hexdigest()


class TokenizerPreprocessor(Preprocessor):
    """Tokenizes every text once, padded to the longest text of the dataset (truncated at
    ``max_length``); :meth:`collate` trims each batch to its own longest sequence and
    :meth:`lengths` (the attention masks' sums) lets training bucket texts of similar lengths.

    ``limit`` is the most tokens allowed: the model's limit, or the study's ``[data]
    max_length`` when it is set (and lower). ``fit(train_texts)`` sets ``max_length`` to the
    ``LENGTH_PERCENTILE``-th percentile of the training texts' token counts, capped by
    ``limit``: a few very long texts do not make every batch long. Before any ``fit``,
    ``max_length`` is the given value (the fitted value saved with an exported model), else
    ``limit``."""

    def __init__(self, tokenizer: Any, max_length: int, limit: int | None = None,
                 limit_source: str = "the model's limit"):
        self.tokenizer = tokenizer
        self.limit = int(limit or max_length)
        self.max_length = min(int(max_length), self.limit)
        self.limit_source = limit_source
        self._summary = ""
        self._tokenizer_key = tokenizer_key(tokenizer)

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        return hashlib.sha256(f"{self._tokenizer_key}|{self.max_length}".encode()).hexdigest()[:16]

    def fit(self, train_inputs: Sequence[Any]) -> None:
        texts = [str(x) for x in train_inputs]
        if not texts:
            return
        counts = np.array([len(ids) for ids in self.tokenizer(
            texts, truncation=True, max_length=self.limit)["input_ids"]])
        chosen = int(np.percentile(counts, LENGTH_PERCENTILE, method="higher"))
        self.max_length = max(1, min(self.limit, chosen))
        cut = int((counts > self.max_length).sum())
        self._summary = (f"max_length {self.max_length} tokens: {LENGTH_PERCENTILE:g}th percentile "
                         f"of {len(texts)} training texts (mean {counts.mean():.0f}, longest "
                         f"{counts.max()}{'+' if counts.max() >= self.limit else ''}; {cut} "
                         f"truncated), at most {self.limit} ({self.limit_source})")

    def summary(self) -> str:
        return self._summary

    def encode(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer([str(x) for x in inputs], padding="longest", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def collate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        longest = int(batch["attention_mask"].sum(dim=1).max()) if len(batch["attention_mask"]) else 1
        return {k: v[:, :max(1, longest)] for k, v in batch.items()}

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["attention_mask"].sum(dim=1)

    def save(self, directory: Any) -> None:
        self.tokenizer.save_pretrained(str(directory))
        (Path(directory) / PREPROCESSOR_FILE).write_text(json.dumps({"max_length": self.max_length}))


PAIR_ENCODINGS = ("cross", "bi")


def _pair(x: Any) -> tuple[str, str]:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError(f"a sentence-pair input is a (text, text_pair) tuple, got {type(x).__name__}")
    return str(x[0]), str(x[1])


class PairTokenizerPreprocessor(TokenizerPreprocessor):
    """Sentence pairs ``(text, text_pair)``.

    * ``mode = "cross"`` (a cross-encoder): the tokenizer encodes the pair as one sequence
      (``[CLS] text [SEP] text_pair [SEP]`` with its token types for BERT-like tokenizers),
      ``truncation="longest_first"`` at ``max_length`` (the longer text loses tokens first);
      tensors ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the tokenizer
      makes them).
    * ``mode = "bi"`` (a bi-encoder): each text alone, truncated at ``max_length``: tensors
      ``input_ids_a``, ``attention_mask_a``, ``input_ids_b``, ``attention_mask_b``.

    ``fit`` sets ``max_length`` from the training pairs' token counts (whole pairs for
    ``cross``, each text for ``bi``); :meth:`collate` trims each sequence to the batch's
    longest; :meth:`lengths` (tokens of the pair) keeps length bucketing."""

    def __init__(self, tokenizer: Any, max_length: int, limit: int | None = None,
                 limit_source: str = "the model's limit", mode: str = "cross"):
        if mode not in PAIR_ENCODINGS:
            raise ValueError(f"pair_encoding must be one of {', '.join(PAIR_ENCODINGS)}, got {mode!r}")
        super().__init__(tokenizer, max_length, limit, limit_source)
        self.mode = mode

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        return hashlib.sha256(f"{self._tokenizer_key}|{self.max_length}|pair-{self.mode}".encode()
                              ).hexdigest()[:16]

    def _groups(self) -> tuple[str, ...]:
        return ("",) if self.mode == "cross" else ("_a", "_b")

    def fit(self, train_inputs: Sequence[Any]) -> None:
        pairs = [_pair(x) for x in train_inputs]
        if not pairs:
            return
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        if self.mode == "cross":
            ids = self.tokenizer(a, b, truncation="longest_first", max_length=self.limit)["input_ids"]
            what = "training pairs"
        else:
            ids = self.tokenizer(a + b, truncation=True, max_length=self.limit)["input_ids"]
            what = "training texts (both sides of each pair)"
        counts = np.array([len(x) for x in ids])
        self.max_length = max(1, min(self.limit, int(np.percentile(counts, LENGTH_PERCENTILE,
                                                                   method="higher"))))
        cut = int((counts > self.max_length).sum())
        self._summary = (f"max_length {self.max_length} tokens ({self.mode}-encoded pairs): "
                         f"{LENGTH_PERCENTILE:g}th percentile of {len(counts)} {what} (mean "
                         f"{counts.mean():.0f}, longest {counts.max()}"
                         f"{'+' if counts.max() >= self.limit else ''}; {cut} truncated), at most "
                         f"{self.limit} ({self.limit_source})")

    def encode(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        pairs = [_pair(x) for x in inputs]
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        if self.mode == "cross":
            enc = self.tokenizer(a, b, padding="longest", truncation="longest_first",
                                 max_length=self.max_length, return_tensors="pt")
            keys = ("input_ids", "attention_mask", "token_type_ids")
            return {k: enc[k] for k in keys if k in enc}
        out = {}
        for suffix, texts in (("_a", a), ("_b", b)):
            enc = self.tokenizer(texts, padding="longest", truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            out[f"input_ids{suffix}"] = enc["input_ids"]
            out[f"attention_mask{suffix}"] = enc["attention_mask"]
        return out

    def collate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return trim_sequences(batch, self._groups())

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(tensors[f"attention_mask{g}"].sum(dim=1) for g in self._groups())

    def save(self, directory: Any) -> None:
        super().save(directory)
        path = Path(directory) / PREPROCESSOR_FILE
        path.write_text(json.dumps({**json.loads(path.read_text()), "pair_encoding": self.mode}))


def trim_sequences(batch: dict[str, torch.Tensor], groups: tuple[str, ...] = ("",)
                   ) -> dict[str, torch.Tensor]:
    """Trim every sequence of ``batch`` to its longest one: the tensors of group ``g`` (keys
    ending in ``g``; ``""``: all keys) to the longest ``attention_mask{g}``."""
    out = dict(batch)
    for g in groups:
        mask = batch[f"attention_mask{g}"]
        longest = max(1, int(mask.sum(dim=1).max()) if len(mask) else 1)
        for k, v in batch.items():
            if k.endswith(g) and (g or len(groups) == 1) and v.dim() >= 2:
                out[k] = v[:, :longest]
    return out


def saved_pair_encoding(directory: Any) -> str | None:
    """How an exported sentence-pair model encodes its pairs (``cross`` / ``bi``; ``None``: not
    a pair model)."""
    path = Path(str(directory)) / PREPROCESSOR_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("pair_encoding")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in PAIR_ENCODINGS else None


def saved_max_length(directory: Any) -> int | None:
    """The fitted ``max_length`` an exported model was trained with (``None``: not one)."""
    path = Path(str(directory)) / PREPROCESSOR_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("max_length")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value >= 1 else None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden (B, T, D)`` over the positions where ``mask (B, T)`` is set."""
    mask_f = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask_f).sum(dim=1) / mask_f.sum(dim=1).clamp(min=1.0)


class TransformersTextBackbone(Backbone):
    """A transformers encoder; features are the attention-masked mean of the last hidden state
    (what sentence encoders such as MiniLM are trained for). Per-position features are that
    hidden state, one per token (special tokens included, as the mean includes them), masked
    by the attention mask."""

    modality = "text"
    position_pooling = "mean"

    def __init__(self, model: Any, tokenizer: Any, name: str, source: str = "",
                 pair_encoding: str | None = None):
        super().__init__()
        if pair_encoding not in (None, *PAIR_ENCODINGS):
            raise BackboneError(f"backbone {name!r}: pair_encoding must be one of "
                                f"{', '.join(PAIR_ENCODINGS)}, got {pair_encoding!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.source = source  # hub id or folder it came from (the MLM objective reads its head)
        #: sentence pairs: ``"cross"`` (one sequence per pair), ``"bi"`` (each text encoded
        #: alone, features ``[u, v, |u - v|, u * v]``); ``None`` for single texts
        self.pair_encoding = pair_encoding
        self.hidden_size = int(model.config.hidden_size)
        self.feature_dim = self.hidden_size * (4 if pair_encoding == "bi" else 1)
        self.variant = "pair-bi" if pair_encoding == "bi" else ""

    @property
    def position_dim(self) -> int:
        return self.hidden_size

    def _groups(self) -> tuple[str, ...]:
        return ("_a", "_b") if self.pair_encoding == "bi" else ("",)

    @staticmethod
    def combine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A bi-encoder's pair features from the two texts' pooled ones: ``[u, v, |u - v|, u * v]``."""
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)

    def _hidden(self, batch: dict[str, torch.Tensor], g: str = "") -> torch.Tensor:
        extra = {"token_type_ids": batch["token_type_ids"]} if not g and "token_type_ids" in batch else {}
        return self.model(input_ids=batch[f"input_ids{g}"], attention_mask=batch[f"attention_mask{g}"],
                          **extra).last_hidden_state

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.pair_encoding == "bi":
            u, v = (masked_mean(self._hidden(batch, g), batch[f"attention_mask{g}"]) for g in ("_a", "_b"))
            return self.combine(u, v)
        return masked_mean(*self.encode_positions(batch))

    def encode_positions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(last hidden state (B, T, hidden_size), attention mask (B, T) as bool)``: one
        position per token of the (collated) batch (a cross-encoded pair: both texts' tokens).
        A bi-encoder has no positions of the pair: :class:`BackboneError`.

        A batch of :class:`WordPreprocessor` (``word_index``, ``word_count``, ``window``) has
        one position per word instead (the hidden state of its first subword; the mask: the
        sentence's words), and its sentences may be longer than the model's window: they run
        in windows (:func:`windowed_hidden`), nothing is truncated."""
        if self.pair_encoding == "bi":
            raise BackboneError(f"the text backbone {self.name!r} encodes sentence pairs as a "
                                "bi-encoder, which has no per-position features of the pair; use "
                                "pair_encoding = \"cross\"")
        mask = batch["attention_mask"]
        ids = batch["input_ids"]
        window = int(batch["window"][0]) if "window" in batch and len(batch["window"]) else ids.shape[1]
        if ids.shape[1] > window:
            hidden = windowed_hidden(self.model, ids, mask, window, self.tokenizer.cls_token_id,
                                     self.tokenizer.sep_token_id)
        else:
            hidden = self._hidden(batch)
        if "word_index" in batch:
            return word_positions(hidden, batch["word_index"], batch["word_count"])
        return hidden, mask.bool()

    def word_preprocessor(self, options: dict) -> "WordPreprocessor":
        """The preprocessor of token classification: words → subwords, windows of at most the
        model's limit (or ``[data] max_length`` where lower) tokens."""
        limit = int(getattr(self.tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH)
        positions = int(getattr(self.model.config, "max_position_embeddings", limit) or limit)
        model_limit = min(limit, positions)
        window = min(int(options.get("max_length") or model_limit), model_limit)
        source = "[data] max_length" if options.get("max_length") and window < model_limit else "the model's limit"
        return WordPreprocessor(self.tokenizer, window, source, self.name)

    # -- strategy "partial": embeddings + layers[:L-k] below, layers[L-k:] + pooling on top ----
    def _layers(self) -> torch.nn.ModuleList:
        """The encoder's layer stack of a BERT-like model (``embeddings`` + ``encoder.layer``:
        BERT, MiniLM, RoBERTa, ELECTRA, XLM-R...)."""
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if (getattr(self.model, "embeddings", None) is None or not isinstance(layers, torch.nn.ModuleList)
                or getattr(self.model.config, "is_decoder", False)):
            raise BackboneError(f"strategy 'partial' is not available for the text backbone "
                                f"{self.name!r} ({type(self.model).__name__}): it splits BERT-like "
                                "encoders (embeddings + encoder.layer); leave 'partial' out of "
                                "[search.space] strategy")
        return layers

    def num_blocks(self) -> int:
        return len(self._layers())

    def _run_layers(self, layers: Any, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask4 = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden,
                                          attention_mask=mask)
        for layer in layers:
            out = layer(hidden, mask4)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def encode_bottom(self, batch: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        layers = self._layers()
        out = {}
        for g in self._groups():
            mask = batch[f"attention_mask{g}"]
            extra = {"token_type_ids": batch["token_type_ids"]} if not g and "token_type_ids" in batch else {}
            hidden = self.model.embeddings(input_ids=batch[f"input_ids{g}"], **extra)
            out[f"hidden{g}"] = self._run_layers(layers[:len(layers) - k], hidden, mask)
            out[f"attention_mask{g}"] = mask
        return out

    def encode_top(self, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        layers = self._layers()
        pooled = []
        for g in self._groups():
            mask = batch[f"attention_mask{g}"]
            hidden = self._run_layers(layers[len(layers) - k:], batch[f"hidden{g}"], mask)
            pooled.append(masked_mean(hidden, mask))
        return self.combine(*pooled) if self.pair_encoding == "bi" else pooled[0]

    def top_modules(self, k: int) -> list[torch.nn.Module]:
        layers = self._layers()
        return list(layers[len(layers) - k:])

    def collate_bottom(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Trim to the batch's longest text, as :meth:`TokenizerPreprocessor.collate` does."""
        return trim_sequences(batch, self._groups())

    def preprocessor(self, options: dict, pair_encoding: str | None = None) -> Preprocessor:
        """The tokenizer as a preprocessor; sentence pairs (:class:`PairTokenizerPreprocessor`)
        encoded as ``pair_encoding`` says, else as the backbone's own :attr:`pair_encoding`."""
        pair_encoding = pair_encoding or self.pair_encoding
        limit = int(getattr(self.tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH)
        positions = int(getattr(self.model.config, "max_position_embeddings", limit) or limit)
        model_limit = min(limit, positions)
        cap = min(int(options.get("max_length") or model_limit), model_limit)
        source = "[data] max_length" if options.get("max_length") and cap < model_limit else "the model's limit"
        saved = saved_max_length(self.source) if self.source else None
        if pair_encoding is not None:
            return PairTokenizerPreprocessor(self.tokenizer, min(saved or DEFAULT_MAX_LENGTH, cap),
                                             cap, source, mode=pair_encoding)
        return TokenizerPreprocessor(self.tokenizer, min(saved or DEFAULT_MAX_LENGTH, cap), cap, source)

    def export(self, directory: Any) -> None:
        quiet_transformers()
        self.model.save_pretrained(str(directory), safe_serialization=True)

    def peft_targets(self) -> dict[str, list[str]]:
        """LoRA / (IA)^3 targets of the encoder's blocks: queries and values by default (the
        LoRA paper's choice), every linear layer with ``lora_targets = "all"``; keys, values and
        feed-forward down-projections for (IA)^3. Names cover BERT-like encoders (``query``),
        DistilBERT (``q_lin``), BART / T5-style and fused ``qkv`` projections."""
        from automl_pt.train.adapters import find_targets

        return find_targets(self.model, QUERY_VALUE, KEY_VALUE, prefix="model.")

    library_formats = ("hf",)

    def export_as(self, fmt: str, directory: Any, head: Any, label_names: list[str]) -> bool:
        """``hf``: the encoder's ``save_pretrained`` folder; the head (mean pooling + linear)
        is not a transformers head, so it is shipped separately (returns ``False``). A head
        per position (token classification: a linear layer per word) *is* transformers'
        token-classification head: the folder is an ``AutoModelForTokenClassification`` one
        (returns ``True``; :func:`save_token_classifier`)."""
        if fmt != "hf":
            return super().export_as(fmt, directory, head, label_names)
        if getattr(head, "features", "pooled") == "positions" and \
                save_token_classifier(self.model, getattr(head, "linear", None), label_names, directory):
            return True
        self.export(directory)
        return False


def save_token_classifier(encoder: Any, linear: Any, label_names: list[str], directory: Any) -> bool:
    """Write ``encoder`` with ``linear`` (hidden size → tags) as transformers'
    ``AutoModelForTokenClassification`` of its architecture (``id2label`` from
    ``label_names``) to ``directory``; ``False`` (nothing written) when the architecture has no
    such model or its classifier is not one linear layer of that shape."""
    import copy

    from transformers import AutoModelForTokenClassification

    if not isinstance(linear, torch.nn.Linear):
        return False
    config = copy.deepcopy(encoder.config)
    config.num_labels = len(label_names)
    config.id2label = {i: n for i, n in enumerate(label_names)}
    config.label2id = {n: i for i, n in enumerate(label_names)}
    try:
        model = AutoModelForTokenClassification.from_config(config)
    except (ValueError, KeyError):
        return False
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, torch.nn.Linear) or classifier.weight.shape != linear.weight.shape:
        return False
    missing, _ = model.base_model.load_state_dict(encoder.state_dict(), strict=False)
    if missing:
        return False
    with torch.no_grad():
        classifier.weight.copy_(linear.weight)
        classifier.bias.copy_(linear.bias)
    quiet_transformers()
    model.save_pretrained(str(directory), safe_serialization=True)
    return True


def window_owners(length: int, window: int) -> list[tuple[int, int, int]]:
    """``(start, first, last)`` per window over a sequence of ``length`` tokens whose first is the
    class token: window ``j`` holds tokens ``start .. start + window - 3`` (a class token before
    them and a separator after: ``window`` tokens in all), windows overlap by half, and it owns
    (returns the hidden states of) tokens ``first .. last - 1``, the ones with more context in
    it than in any other window (the middle of the overlaps)."""
    content = max(window - 2, 1)
    stride = max(content // 2, 1)
    starts = [1]
    while starts[-1] + content < length:
        starts.append(starts[-1] + stride)
    owners = []
    for j, s in enumerate(starts):
        first = 1 if j == 0 else (s + starts[j - 1] + content) // 2
        last = length if j == len(starts) - 1 else (starts[j + 1] + s + content) // 2
        owners.append((s, first, last))
    return owners


def windowed_hidden(model: Any, ids: torch.Tensor, mask: torch.Tensor, window: int,
                    cls_id: int | None, sep_id: int | None) -> torch.Tensor:
    """The last hidden state of sequences longer than ``window`` tokens, run as overlapping
    windows of ``window`` tokens (:func:`window_owners`): each window is the class token, a slice
    of the sequence and a separator (where the sequence goes on); each token keeps its hidden
    state from the window that owns it, the class token from the first window."""
    b, length = ids.shape
    sep = torch.full((b, 1), sep_id if sep_id is not None else 0, dtype=ids.dtype, device=ids.device)
    pieces = []
    for j, (start, first, last) in enumerate(window_owners(length, window)):
        end = min(start + window - 2, length)
        more = mask[:, end:end + 1] if end < length else torch.zeros_like(mask[:, :1])
        w_ids = torch.cat([ids[:, :1], ids[:, start:end], sep], dim=1)
        w_mask = torch.cat([mask[:, :1], mask[:, start:end], more], dim=1)
        hidden = model(input_ids=w_ids, attention_mask=w_mask).last_hidden_state
        if j == 0:
            pieces.append(hidden[:, :1])
        pieces.append(hidden[:, 1 + first - start:1 + last - start])
    return torch.cat(pieces, dim=1)


def word_positions(hidden: torch.Tensor, word_index: torch.Tensor,
                   word_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (B, words, D), mask (B, words))``: the hidden state of each word's first
    subword (``word_index[b, t]`` is the word token ``t`` starts, ``-1`` for every other token)."""
    width = max(int(word_count.max()) if len(word_count) else 1, 1)
    b, t = (word_index >= 0).nonzero(as_tuple=True)
    feats = hidden.new_zeros(hidden.shape[0], width, hidden.shape[2])
    feats = feats.index_put((b, word_index[b, t]), hidden[b, t])
    mask = torch.arange(width, device=hidden.device)[None, :] < word_count.to(hidden.device)[:, None]
    return feats, mask


class WordPreprocessor(Preprocessor):
    """Token classification's preprocessor: each sentence (a list of words) is split into
    subwords by a fast tokenizer (``is_split_into_words``) without truncation; ``word_index``
    marks each word's first subword (``-1`` elsewhere), ``word_count`` counts the words and
    ``window`` is the most tokens the model runs at once (longer sentences are windowed by the
    backbone). A word the tokenizer turns into nothing is read as the unknown token, so every
    word has a first subword. A sentence given as one string (unlabeled text for continued
    pre-training) is split at whitespace."""

    def __init__(self, tokenizer: Any, window: int, limit_source: str = "the model's limit",
                 name: str = ""):
        if not getattr(tokenizer, "is_fast", False):
            raise BackboneError(f"token classification needs a fast tokenizer (word_ids); the "
                                f"backbone {name!r} has {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.window = max(int(window), 3)
        self.limit_source = limit_source
        self._summary = ""
        self._tokenizer_key = tokenizer_key(tokenizer)

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        return hashlib.sha256(f"{self._tokenizer_key}|words|{self.window}".encode()).hexdigest()[:16]

    @property
    def max_length(self) -> int:
        return self.window

    def _tokenize(self, sentences: list[list[str]]):
        return self.tokenizer(sentences, is_split_into_words=True, truncation=False,
                              padding="longest", return_tensors="pt")

    def fit(self, train_inputs: Sequence[Any]) -> None:
        sentences = [x.split() if isinstance(x, str) else list(x) for x in train_inputs]
        if not sentences:
            return
        counts = np.array([len(ids) for ids in self.tokenizer(
            sentences, is_split_into_words=True, truncation=False)["input_ids"]])
        longer = int((counts > self.window).sum())
        self._summary = (f"windows of {self.window} tokens ({self.limit_source}); {len(sentences)} "
                         f"training sentences of {counts.mean():.0f} tokens on average, longest "
                         f"{counts.max()}; {longer} run in overlapping windows")

    def summary(self) -> str:
        return self._summary

    def encode(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        # a plain string (an unlabeled text for continued pre-training) is its whitespace words
        sentences = [x.split() if isinstance(x, str) else [str(w) for w in x] for x in inputs]
        enc = self._tokenize(sentences)
        missing = {i: sorted(set(range(len(s))) - {w for w in enc.word_ids(i) if w is not None})
                   for i, s in enumerate(sentences)}
        if any(missing.values()):
            unk = self.tokenizer.unk_token or "[UNK]"
            sentences = [[unk if j in set(missing[i]) else w for j, w in enumerate(s)]
                         for i, s in enumerate(sentences)]
            enc = self._tokenize(sentences)
        n, length = enc["input_ids"].shape
        word_index = torch.full((n, length), -1, dtype=torch.long)
        for i in range(n):
            previous = None
            for t, w in enumerate(enc.word_ids(i)):
                if w is not None and w != previous:
                    word_index[i, t] = w
                previous = w
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "word_index": word_index,
                "word_count": torch.tensor([len(s) for s in sentences], dtype=torch.long),
                "window": torch.full((n,), self.window, dtype=torch.long)}

    def collate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        longest = int(batch["attention_mask"].sum(dim=1).max()) if len(batch["attention_mask"]) else 1
        return {k: v[:, :max(1, longest)] if v.dim() == 2 else v for k, v in batch.items()}

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["attention_mask"].sum(dim=1)

    def save(self, directory: Any) -> None:
        self.tokenizer.save_pretrained(str(directory))
        (Path(directory) / PREPROCESSOR_FILE).write_text(json.dumps({"max_length": self.window}))


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_transformers_backbone(source: str, name: str, options: dict) -> TransformersTextBackbone:
    """Load model + tokenizer from a hub id or a local folder. ``trust_remote_code`` stays off
    unless ``options['trust_remote_code'] is True``: the core sets it only from its caller
    (``automl_pt.load(..., trust_remote_code=True)``, ``automl-pt predict --trust-remote-code``),
    never from a study or model file. With ``init = "random"`` in ``options['params']`` the same
    architecture is built with random weights (``AutoModel.from_config``). Raises
    :class:`BackboneError` (also for a model that needs custom code when it is off)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from automl_pt.engine.pretrain import wants_random_init

    quiet_transformers()
    trust = options.get("trust_remote_code") is True
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
        if wants_random_init(options):
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust)
            model = AutoModel.from_config(config, trust_remote_code=trust)
        else:
            model = AutoModel.from_pretrained(source, trust_remote_code=trust)
    except OSError as exc:
        where = "local folder" if Path(source).exists() else "Hugging Face hub id"
        raise BackboneError(f"backbone {name!r}: cannot load {where} {source!r}: {exc}") from exc
    except ValueError as exc:
        if "custom code" not in str(exc):
            raise
        raise custom_code_error(name, source) from exc
    return TransformersTextBackbone(model, tokenizer, name, source, pair_encoding(source, options))


def pair_encoding(source: str, options: dict) -> str | None:
    """How the backbone encodes sentence pairs: the trial's ``pair_encoding`` parameter (a study
    of a pair task; ``None`` for single-text tasks), or, when a model is loaded for prediction
    (no trial parameters), what the exported folder recorded."""
    params = options.get("params")
    if params is not None:
        return params.get("pair_encoding")
    return saved_pair_encoding(source) if Path(source).is_dir() else None


def custom_code_error(name: str, source: str) -> BackboneError:
    """transformers refused to run the model's custom code (``auto_map``): say how to allow it."""
    from automl_pt.export.provenance import TRUST_HINT

    return BackboneError(f"backbone {name!r}: {source!r} needs custom code (transformers auto_map), "
                         f"which is off; {TRUST_HINT}")
