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
