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


class TextExportSupport(ExportSupport):
    example = '["an example text", "another one"]'
    preprocessing_steps = ("tokenize with the saved tokenizer (truncation at max_length), pad to "
                           "the longest text")

    def sample_inputs(self, n: int, seed: int) -> list[Any]:
        return [" ".join(WORDS[: 2 + (3 * i + seed) % (len(WORDS) - 1)]) for i in range(n)]

    def axis_name(self, input_name: str, dim: int) -> str | None:
        return "sequence" if dim == 1 and input_name in SEQUENCE_INPUTS else None

    def describe_head(self, backbone: Any) -> dict[str, Any]:
        return {"applied_to": "attention-masked mean of the last hidden state"}

    def finish_library_folder(self, fmt: str, directory: Path, label_names: list[str],
                              task_kind: str = "classification") -> None:
        if fmt == "hf":
            set_transformers_labels(directory, label_names, task_kind)

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        if fmt != "hf":
            return None
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

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        return ("from transformers import AutoTokenizer\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                f"texts = {self.example}\n"
                "enc = tokenizer(texts, padding=True, truncation=True, "
                "max_length=config[\"preprocessing\"][\"max_length\"], return_tensors=\"np\")\n"
                "inputs = {\"input_ids\": enc[\"input_ids\"].astype(np.int64),\n"
                "          \"attention_mask\": enc[\"attention_mask\"].astype(np.int64)}\n")
