"""What ``automl-pt export`` needs to know about text backbones: sample texts to trace with, the
shared sequence axis, the preprocessing, mean pooling before the head, and the model card's
snippets for the ``hf`` folder and for ``onnx`` / ``torchscript``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automl_pt.export.support import ExportSupport, answer_snippet

#: inputs of the tokenizer that share the sequence axis
SEQUENCE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WORDS = "the model reads a short text and then a longer one with more words in it".split()


#: transformers' ``config.problem_type`` of each automl_pt task kind
PROBLEM_TYPES = {"classification": "single_label_classification", "regression": "regression",
                 "multilabel": "multi_label_classification"}


def set_transformers_labels(directory: Path, label_names: list[str], task_kind: str) -> None:
    """The label names (``id2label`` / ``label2id``; a regression's target column) and the
    task (``problem_type``) into the transformers ``config.json`` in ``directory``, so that
    transformers reads the folder as the task it is."""
    cfg_path = directory / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["id2label"] = {str(i): n for i, n in enumerate(label_names)}
    cfg["label2id"] = {n: i for i, n in enumerate(label_names)}
    if task_kind in PROBLEM_TYPES:   # transformers has none for token classification
        cfg["problem_type"] = PROBLEM_TYPES[task_kind]
    cfg_path.write_text(json.dumps(cfg, indent=2))


PAIR_EXAMPLE = ('[("an example text", "another example text"), '
                '("a short one", "a different one")]  # (text, text_pair)')
PAIR_STEPS = {
    "cross": ("tokenize each (text, text_pair) as one sequence with the saved tokenizer "
              "(tokenizer(texts, text_pairs, truncation=\"longest_first\") at max_length: "
              "input_ids, attention_mask, token_type_ids), pad to the longest pair"),
    "bi": ("tokenize the texts and the text_pairs separately with the saved tokenizer (truncation "
           "at max_length), each padded to its longest: input_ids_a / attention_mask_a for the "
           "texts, input_ids_b / attention_mask_b for the text_pairs"),
}


class TextExportSupport(ExportSupport):
    """Export knowledge of a transformers text backbone; ``pair_encoding`` (``cross`` / ``bi``)
    for a sentence-pair model, whose inputs are ``(text, text_pair)`` tuples."""

    example = '["an example text", "another one"]'
    preprocessing_steps = ("tokenize with the saved tokenizer (truncation at max_length), pad to "
                           "the longest text")

    def __init__(self, pair_encoding: str | None = None):
        self.pair_encoding = pair_encoding
        if pair_encoding is not None:
            self.example = PAIR_EXAMPLE
            self.preprocessing_steps = PAIR_STEPS[pair_encoding]

    def sample_inputs(self, n: int, seed: int) -> list[Any]:
        texts = [" ".join(WORDS[: 2 + (3 * i + seed) % (len(WORDS) - 1)]) for i in range(n + 1)]
        if self.pair_encoding is None:
            return texts[:n]
        return [(texts[i], texts[(i + 2) % (n + 1)]) for i in range(n)]

    def axis_name(self, input_name: str, dim: int) -> str | None:
        if dim != 1:
            return None
        for suffix in ("_a", "_b"):
            if self.pair_encoding == "bi" and input_name.removesuffix(suffix) in SEQUENCE_INPUTS \
                    and input_name.endswith(suffix):
                return f"sequence{suffix}"
        return "sequence" if input_name in SEQUENCE_INPUTS else None

    def describe_head(self, backbone: Any) -> dict[str, Any]:
        if self.pair_encoding == "bi":
            return {"applied_to": "[u, v, |u - v|, u * v]: u and v the attention-masked means of the "
                                  "last hidden state of the text and of the text_pair, each encoded "
                                  "alone (a bi-encoder)", "pair_encoding": "bi"}
        if self.pair_encoding == "cross":
            return {"applied_to": "attention-masked mean of the last hidden state of the pair, "
                                  "encoded as one sequence (a cross-encoder)", "pair_encoding": "cross"}
        return {"applied_to": "attention-masked mean of the last hidden state"}

    def finish_library_folder(self, fmt: str, directory: Path, label_names: list[str],
                              task_kind: str = "classification") -> None:
        if fmt == "hf":
            set_transformers_labels(directory, label_names, task_kind)

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        if fmt != "hf":
            return None
        if self.pair_encoding is not None:
            return self._pair_library_snippet(config, where)
        return (f"import torch\nfrom safetensors.torch import load_file\n"
                f"from transformers import AutoModel, AutoTokenizer\n\nfolder = {where}\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                "encoder = AutoModel.from_pretrained(folder).eval()\n"
                f"texts = {self.example}\n"
                "batch = tokenizer(texts, padding=True, truncation=True, "
                f"max_length={config['preprocessing'].get('max_length', 512)}, return_tensors=\"pt\")\n"
                "with torch.no_grad():\n"
                "    hidden = encoder(**batch).last_hidden_state\n"
                "mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
                "features = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # masked mean\n"
                "head = load_file(f\"{folder}/head.safetensors\")\n"
                "logits = features @ head[\"linear.weight\"].T + head[\"linear.bias\"]\n"
                "names = [encoder.config.id2label[i] for i in range(len(encoder.config.id2label))]\n"
                + answer_snippet(config, "logits", "names"))

    def _pair_library_snippet(self, config: dict[str, Any], where: str) -> str:
        max_length = config["preprocessing"].get("max_length", 512)
        head = ("head = load_file(f\"{folder}/head.safetensors\")\n"
                "logits = features @ head[\"linear.weight\"].T + head[\"linear.bias\"]\n"
                "names = [encoder.config.id2label[i] for i in range(len(encoder.config.id2label))]\n"
                + answer_snippet(config, "logits", "names"))
        start = (f"import torch\nfrom safetensors.torch import load_file\n"
                 f"from transformers import AutoModel, AutoTokenizer\n\nfolder = {where}\n"
                 "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                 "encoder = AutoModel.from_pretrained(folder).eval()\n"
                 f"pairs = {self.example}\n"
                 "texts, text_pairs = [a for a, _ in pairs], [b for _, b in pairs]\n\n\n"
                 "def pooled(batch):\n"
                 "    with torch.no_grad():\n"
                 "        hidden = encoder(**batch).last_hidden_state\n"
                 "    mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
                 "    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # masked mean\n\n\n")
        if self.pair_encoding == "cross":
            return (start + "batch = tokenizer(texts, text_pairs, padding=True, truncation=\"longest_first\", "
                    f"max_length={max_length}, return_tensors=\"pt\")\n"
                    "features = pooled(batch)  # the pair as one sequence\n" + head)
        return (start + "u, v = (pooled(tokenizer(side, padding=True, truncation=True, "
                f"max_length={max_length}, return_tensors=\"pt\"))\n"
                "        for side in (texts, text_pairs))  # each text alone\n"
                "features = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)\n" + head)

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        if self.pair_encoding == "cross":
            return ("from transformers import AutoTokenizer\n"
                    "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                    f"pairs = {self.example}\n"
                    "enc = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, "
                    "truncation=\"longest_first\", max_length=config[\"preprocessing\"][\"max_length\"], "
                    "return_tensors=\"np\")\n"
                    "inputs = {k: enc[k].astype(np.int64) for k in (\"input_ids\", \"attention_mask\", "
                    "\"token_type_ids\") if k in enc}\n")
        if self.pair_encoding == "bi":
            return ("from transformers import AutoTokenizer\n"
                    "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                    f"pairs = {self.example}\n"
                    "inputs = {}\n"
                    "for suffix, side in ((\"_a\", [a for a, _ in pairs]), (\"_b\", [b for _, b in pairs])):\n"
                    "    enc = tokenizer(side, padding=True, truncation=True, "
                    "max_length=config[\"preprocessing\"][\"max_length\"], return_tensors=\"np\")\n"
                    "    inputs[\"input_ids\" + suffix] = enc[\"input_ids\"].astype(np.int64)\n"
                    "    inputs[\"attention_mask\" + suffix] = enc[\"attention_mask\"].astype(np.int64)\n")
        return ("from transformers import AutoTokenizer\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                f"texts = {self.example}\n"
                "enc = tokenizer(texts, padding=True, truncation=True, "
                "max_length=config[\"preprocessing\"][\"max_length\"], return_tensors=\"np\")\n"
                "inputs = {\"input_ids\": enc[\"input_ids\"].astype(np.int64),\n"
                "          \"attention_mask\": enc[\"attention_mask\"].astype(np.int64)}\n")


#: the batch tensors only the native model reads (its word alignment, its window size)
WORD_TENSORS = ("word_index", "word_count", "window")
#: the cards' example input: sentences as lists of words (no comment: it goes inside a call)
WORD_EXAMPLE = '[["John", "Smith", "moved", "to", "New", "York"], ["Acme", "Corp", "hired", "Mary"]]'
#: Python (for the cards) from per-token scores ``scores[i]`` of sentence ``i`` (numpy or torch,
#: one row per subword token) to each word's tag, read at its first subword
FIRST_SUBWORDS = (
    "tags = []\n"
    "for i, sentence in enumerate(sentences):\n"
    "    firsts, previous = [], None\n"
    "    for t, w in enumerate(batch.word_ids(i)):  # the word each subword token belongs to\n"
    "        if w is not None and w != previous:\n"
    "            firsts.append(t)  # a word's label is read at its first subword\n"
    "        previous = w\n"
    "    tags.append([names[int(j)] for j in scores[i][firsts].argmax(-1).tolist()])\n"
    "print(tags)\n")


class WordExportSupport(TextExportSupport):
    """Export knowledge of a token-classification (NER) text model: sentences come as lists of
    words, the tokenizer splits them into subwords, and a word's tag is read at its first
    subword. ``onnx`` / ``torchscript`` files take the tokenizer's tensors and return a row of
    logits per subword token (``NaN`` at padding); the ``hf`` folder is transformers'
    ``AutoModelForTokenClassification``."""

    example = WORD_EXAMPLE
    preprocessing_steps = ("split each sentence's words into subwords with the saved fast tokenizer "
                           "(tokenizer(words, is_split_into_words=True), no truncation: input_ids, "
                           "attention_mask, token_type_ids), pad to the longest; a word's tag is read "
                           "at its first subword (tokenizer word_ids()); later subwords, special "
                           "tokens and padding are not scored")

    def __init__(self):
        super().__init__(None)

    def sample_inputs(self, n: int, seed: int) -> list[Any]:
        return [WORDS[: 2 + (3 * i + seed) % (len(WORDS) - 1)] for i in range(n)]

    def export_tensors(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if k not in WORD_TENSORS}

    def describe_head(self, backbone: Any) -> dict[str, Any]:
        return {"applied_to": "the last hidden state of each word's first subword"}

    def predicts(self, config: dict[str, Any]) -> str | None:
        labels = config["labels"]
        return (f"A token-classification (named-entity) model: it tags every word of a sentence "
                f"with one of {len(labels)} BIO / IOB2 tags ({', '.join(labels)}), scored by "
                f"entity-level {config.get('metric')} (CoNLL, exact spans).")

    def output_text(self, config: dict[str, Any]) -> str | None:
        return ("`logits` (batch, position, tags): a row per subword token, NaN at padding; a "
                "word's tag is the argmax at its first subword")

    def card_notes(self, config: dict[str, Any]) -> list[str]:
        window = config["preprocessing"].get("window")
        lines = ["## Words and subwords", "",
                 "The model reads sentences as lists of words. The saved (fast) tokenizer splits "
                 "them into subwords (`is_split_into_words=True`); each word's tag is predicted at "
                 "its **first subword** (the first token whose `word_ids()` is that word), as in "
                 "training, where the later subwords of a word, special tokens and padding carried "
                 "no label."]
        if config.get("written_as") == "native":
            lines[-1] += (f" `automl_pt.load` does this alignment, and runs sentences longer than "
                          f"{window} tokens in overlapping windows (each word keeps the window "
                          "where it has the most context).")
            return lines + [""]
        lines[-1] += (" The snippet below does this alignment by hand. A word the tokenizer turns "
                      "into nothing should be replaced by the unknown token first.")
        return lines + ["", f"`automl_pt.load` runs sentences longer than {window} tokens in "
                        "overlapping windows; this export runs each sentence as one sequence, so "
                        "split sentences longer than the model's position limit before tagging them.", ""]

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        if fmt != "hf":
            return None
        return ("import torch\nfrom transformers import AutoModelForTokenClassification, AutoTokenizer\n\n"
                f"folder = {where}\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                "model = AutoModelForTokenClassification.from_pretrained(folder).eval()\n"
                f"sentences = {self.example}\n"
                "batch = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors=\"pt\")\n"
                "with torch.no_grad():\n"
                "    scores = model(**batch).logits  # (sentences, subword tokens, tags)\n"
                "names = [model.config.id2label[i] for i in range(model.config.num_labels)]\n"
                + FIRST_SUBWORDS)

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        return ("from transformers import AutoTokenizer\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                f"sentences = {self.example}\n"
                "batch = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors=\"np\")\n"
                "inputs = {i[\"name\"]: batch[i[\"name\"]].astype(np.int64) for i in config[\"inputs\"]}\n")

    def tensor_answer(self, config: dict[str, Any]) -> str | None:
        return "scores = logits  # (sentences, subword tokens, tags)\nnames = config[\"labels\"]\n" + FIRST_SUBWORDS
