"""Token classification (named-entity recognition): a BIO / IOB2 tag per word.

* **data**: a list of words and a list of tags per row (JSONL / Parquet, ``[data] tokens_column``
  and ``label_column``), or a CoNLL-style file (:func:`read_conll`: ``word ... tag`` per line, a
  blank line between sentences). The tag set is read from train; tags that are not ``O``,
  ``B-<type>`` or ``I-<type>``, tags never seen in train, and rows whose word and tag counts
  differ are errors naming the rows.
* **preprocessing** (:class:`WordPreprocessor`): words are split into subwords by the backbone's
  (fast) tokenizer (``is_split_into_words``, ``word_ids``); each word is represented by its
  first subword. Nothing is truncated: a sentence longer than the model's window runs in
  overlapping windows (:meth:`automl_pt_text.backbone.TransformersTextBackbone.encode_positions`)
  and each token keeps the hidden state of the window where it has the most context.
* **task** (:class:`TokenClassificationTask`): a linear head per word, cross-entropy over words,
  entity-level CoNLL scores (``seqeval``): ``entity_f1`` (default), ``entity_precision``,
  ``entity_recall``. ``predict`` gives a tag per input word and the entity spans.

Module-level imports are light (numpy only): registering the task stays instant.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from automl_pt.errors import DataError
from automl_pt.tasks import IGNORE, ROWS_LISTED, Task, random_subset, rows_text

TASK = "token-classification"
KIND = "token_classification"
METRICS = ("entity_f1", "entity_precision", "entity_recall")
CONLL_SUFFIXES = (".conll", ".iob", ".iob2", ".bio")
_TAG = re.compile(r"^(?:O|[BI]-\S+)$")


# -- data --------------------------------------------------------------------------------------
def read_conll(path: Path, options: dict):
    """A CoNLL-style file as a table: one sentence per row, its words in the input column
    (``[data] tokens_column``) and its tags in the label column. Each line is ``word ... tag``
    (whitespace-separated, the tag last: CoNLL-2003's four columns work), a blank line ends a
    sentence, ``-DOCSTART-`` lines are skipped. A line with one field is a :class:`DataError`
    naming it."""
    import pandas as pd

    words_col = options.get("input_column") or "tokens"
    tags_col = options.get("label_column") or "tags"
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    bad: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            if len(fields) < 2:
                bad.append(n)
                continue
            words.append(fields[0])
            tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    if bad:
        raise DataError(f"{path}: {len(bad)} line(s) have a word but no tag (expected 'word tag'), "
                        f"lines {rows_text(np.asarray(bad))}")
    return pd.DataFrame({words_col: pd.Series([s[0] for s in sentences], dtype=object),
                         tags_col: pd.Series([s[1] for s in sentences], dtype=object)})


def _as_list(value: Any) -> list | None:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else None


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` word spans (``end`` exclusive) of IOB2 ``tags``, as CoNLL's
    ``conlleval`` reads them: an ``I-X`` after ``O`` or after another type starts an entity."""
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, typ = tag.partition("-")
        if kind is not None and (prefix != "I" or typ != kind):
            spans.append((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, start = typ, i
    return spans


# -- metrics -----------------------------------------------------------------------------------
class TagPredictions(np.ndarray):
    """Predictions of a token-classification task: a 1-d object array holding each sentence's
    tag indices (one per word), with ``tags`` the names of the indices (what the metrics need to
    find entities)."""

    tags: list[str] | None = None

    def __array_finalize__(self, obj):
        self.tags = getattr(obj, "tags", None)


def _tag_sequences(labels: np.ndarray, predictions: Any) -> tuple[list[list[str]], list[list[str]]]:
    tags = getattr(predictions, "tags", None)
    if tags is None:
        raise ValueError("entity metrics need the predictions of a token-classification task "
                         "(TokenClassificationTask.predict)")
    true, pred = [], []
    for row, p in zip(np.asarray(labels), predictions):
        n = int((row != IGNORE).sum())
        true.append([tags[int(i)] for i in row[:n]])
        pred.append([tags[int(i)] for i in np.asarray(p)[:n]])
    return true, pred


def _entity_metric(kind: str):
    def metric(labels, predictions, probabilities) -> float:
        from seqeval.metrics import f1_score, precision_score, recall_score

        true, pred = _tag_sequences(labels, predictions)
        fn = {"f1": f1_score, "precision": precision_score, "recall": recall_score}[kind]
        return float(fn(true, pred, zero_division=0))

    metric.__name__ = f"entity_{kind}"
    return metric


entity_f1 = _entity_metric("f1")
entity_precision = _entity_metric("precision")
entity_recall = _entity_metric("recall")


def per_type_report(labels: np.ndarray, predictions: Any) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per entity type (CoNLL scoring)."""
    from seqeval.metrics import classification_report

    true, pred = _tag_sequences(labels, predictions)
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    return {k: {m: float(v) for m, v in d.items()} for k, d in report.items()}


# -- model ---------------------------------------------------------------------------------------
def _token_head(dim: int, tags: int, dropout: float):
    import torch
    from torch import nn

    class TokenHead(nn.Module):
        """A linear layer per word; positions that are no word (padding) are NaN, so no one can
        mistake them for predictions (the loss reads real words only)."""

        features = "positions"

        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(dropout)
            self.linear = nn.Linear(dim, tags)

        def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            logits = self.linear(self.dropout(features))
            return logits.masked_fill(~mask.unsqueeze(-1), float("nan"))

    return TokenHead()


class TokenClassificationTask(Task):
    """A tag per word (see the module docstring)."""

    kind = KIND
    features = "positions"
    budget_unit = "examples"
    report = "confusion"
    single_label = False
    decode_reads_inputs = True

    def __init__(self, name: str = TASK):
        self.name = name
        self.tags: list[str] | None = None

    # data
    def read_targets(self, values, rows, source, split, options=None):
        out, not_lists, bad_tags = [], [], []
        for v, row in zip(values, rows):
            if v is None:
                out.append(None)
                continue
            items = _as_list(v)
            if items is None:
                not_lists.append((int(row), v))
                out.append(None)
                continue
            tags = tuple(str(t).strip() for t in items)
            wrong = [t for t in tags if not _TAG.match(t)]
            if wrong:
                bad_tags.append((int(row), wrong[0]))
            out.append(tags)
        if not_lists:
            listed = ", ".join(f"row {r}: {v!r}" for r, v in not_lists[:ROWS_LISTED])
            raise DataError(f"{source}: {len(not_lists)} row(s) in {split} have no list of tags "
                            f"({listed}); give one tag per word as a list")
        if bad_tags:
            listed = ", ".join(f"row {r}: {t!r}" for r, t in bad_tags[:ROWS_LISTED])
            raise DataError(f"{source}: {len(bad_tags)} row(s) in {split} have tags that are not BIO / "
                            f"IOB2 ('O', 'B-<type>', 'I-<type>'): {listed}")
        return out

    def align_inputs(self, inputs, targets, rows, source, split):
        words, not_lists, mismatch = [], [], []
        for x, t, row in zip(inputs, targets, rows):
            items = _as_list(x)
            if items is None or any(not isinstance(w, str) or not w.strip() for w in items):
                not_lists.append(int(row))
                words.append(x)
                continue
            items = [w.strip() for w in items]
            if t is not None and len(t) != len(items):
                mismatch.append((int(row), len(items), len(t)))
            words.append(items)
        if not_lists:
            raise DataError(f"{source}: {len(not_lists)} row(s) in {split} are not lists of non-empty "
                            f"words, data rows {rows_text(np.asarray(not_lists))}")
        if mismatch:
            listed = ", ".join(f"row {r}: {w} words, {t} tags" for r, w, t in mismatch[:ROWS_LISTED])
            raise DataError(f"{source}: {len(mismatch)} row(s) in {split} have a different number of "
                            f"words and tags ({listed}{' ...' if len(mismatch) > ROWS_LISTED else ''})")
        return words

    def label_names(self, targets, source, label_column):
        tags = {x for t in targets if t is not None for x in t}
        if not any(t != "O" for t in tags):
            raise DataError(f"{source}: the training tags in column {label_column!r} hold no entity "
                            "(only 'O'); token classification needs B-<type> / I-<type> tags")
        return sorted(tags, key=lambda t: (t != "O", t[2:], t[:1]))

    def encode_targets(self, targets, label_names, rows, source, split):
        index = {n: i for i, n in enumerate(label_names)}
        unseen = np.array([any(x not in index for x in t) for t in targets], dtype=bool)
        if unseen.any():
            names = sorted({x for t in targets for x in t if x not in index})
            raise DataError(f"{source}: {int(unseen.sum())} row(s) in {split} have tags never seen in "
                            f"train ({', '.join(map(repr, names[:10]))}), data rows "
                            f"{rows_text(np.asarray(rows)[unseen])}")
        width = max((len(t) for t in targets), default=0)
        out = np.full((len(targets), max(width, 1)), IGNORE, dtype=np.int64)
        for i, t in enumerate(targets):
            out[i, :len(t)] = [index[x] for x in t]
        return out

    def stratify(self, encoded):
        return None

    def class_counts(self, encoded, label_names):
        return None

    def imbalanced(self, encoded, label_names):
        return False

    # model
    def fit(self, train_targets, label_names):
        self.tags = list(label_names)

    def build_head(self, feature_dim, num_labels, params):
        return _token_head(feature_dim, num_labels, float(params.get("dropout", 0.1)))

    def target_tensor(self, targets):
        import torch

        return torch.as_tensor(np.asarray(targets), dtype=torch.long)

    def loss(self, logits, targets, params):
        import torch

        width = logits.shape[1]
        if targets.shape[1] < width:
            targets = torch.nn.functional.pad(targets, (0, width - targets.shape[1]), value=IGNORE)
        targets = targets[:, :width]
        real = targets != IGNORE
        return torch.nn.functional.cross_entropy(logits[real].float(), targets[real])

    def predict(self, logits):
        import torch

        logits = logits.detach().float()
        real = ~torch.isnan(logits).any(dim=-1)
        probs = torch.softmax(torch.nan_to_num(logits), dim=-1).cpu().numpy()
        counts = real.sum(dim=1).cpu().numpy()
        preds = np.empty(len(logits), dtype=object)
        prob = np.empty(len(logits), dtype=object)
        for i, n in enumerate(counts):
            prob[i] = probs[i, :n]
            preds[i] = probs[i, :n].argmax(axis=1)
        preds = preds.view(TagPredictions)
        preds.tags = self.tags
        return preds, prob

    def decode(self, predictions, probabilities, label_names, inputs=None):
        """Per sentence ``{"tags": [a tag per word], "entities": [{"text", "type", "start",
        "end"}]}`` (word offsets, ``end`` exclusive; ``text`` the words joined by spaces)."""
        out = []
        for i, p in enumerate(predictions):
            tags = [label_names[int(j)] for j in np.asarray(p)]
            words = list(inputs[i]) if inputs is not None else None
            entities = [{"text": " ".join(words[s:e]) if words else None, "type": typ, "start": s, "end": e}
                        for typ, s, e in entity_spans(tags)]
            out.append({"tags": tags, "entities": entities})
        return out

    def test_table(self, labels, predictions):
        """Per entity type: precision, recall, F1 and support (CoNLL scoring), then the micro
        and macro averages."""
        import pandas as pd

        report = per_type_report(labels, predictions)
        types = sorted(k for k in report if " avg" not in k)
        averages = [k for k in ("micro avg", "macro avg") if k in report]
        frame = pd.DataFrame([{"entity type": k, "precision": report[k]["precision"],
                               "recall": report[k]["recall"], "f1": report[k]["f1-score"],
                               "support": int(report[k]["support"])} for k in types + averages],
                             columns=["entity type", "precision", "recall", "f1", "support"])
        frame.attrs["title"] = "Entity scores per type (CoNLL, exact spans)"
        return frame

    def subset_indices(self, targets, budget, seed):
        return random_subset(len(targets), budget, seed)


def create_task() -> TokenClassificationTask:
    return TokenClassificationTask(TASK)
