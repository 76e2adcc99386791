"""The model card (``README.md``) of an export folder: what the model is, how well it did, how it
was found, and a "how to load" snippet for its format that runs as written (the tests execute
every one of them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .support import EXPORT_CONFIG, ExportFormatError, ExportSupport, answer_snippet


def md(value: Any) -> str:
    """``value`` as Markdown text that shows as written: HTML (``<script>``) as entities, Markdown
    punctuation (emphasis, links, code, table cells ``|``) backslash-escaped, newlines as spaces."""
    text = " ".join(str(value).splitlines())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*\[\]|~!#])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def code(value: Any) -> str:
    """``value`` as a Markdown code span (fenced by more backticks than it holds); not for
    table cells (a ``|`` would split the cell: use :func:`md` there)."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def model_card(config: dict[str, Any], folder: Path, support: ExportSupport | None = None) -> str:
    """The folder's ``README.md``: what the model is, how well it did, how it was found, and a
    snippet that loads it in its format (from the backbone's plugin: ``support``). Every value
    from the data or the study (labels, paths, names, parameter values) is escaped (:func:`md`,
    :func:`code`)."""
    metrics = config.get("metrics") or {}
    support = support or ExportSupport()
    lines = [f"# {md(config.get('study'))}: {md(config.get('task'))} ({md(config.get('format'))} export)",
             "", (support.predicts(config) or what_it_predicts(config)) + f" Fine-tuned from {code(config.get('backbone'))} "
             f"({md(config.get('backbone_source'))}) by automl_pt.", ""]
    lines += task_details(config)
    lines += ["## Scores", "", "| split | " + " | ".join(["metric", "value"]) + " |", "| --- | --- | --- |"]
    for split in ("validation", "test"):
        for name, value in (metrics.get(split) or {}).items():
            if isinstance(value, (int, float)):
                lines.append(f"| {split} | {md(name)} | {value:.4f} |")
    lines += ["", f"Optimised metric: {code(config.get('metric'))} (validation), best trial "
              f"{md(config.get('trial'))}.", ""]
    data = config.get("data")
    if data:
        lines += ["## Data", ""]
        for split, path in data.get("files", {}).items():
            count = data.get("counts", {}).get(split)
            lines.append(f"- {md(split)}: {code(path)}" + (f" ({count} examples)" if count is not None else ""))
        if data.get("counts", {}).get("skipped_total"):
            lines.append(f"- unreadable files left out: {data['counts']['skipped_total']}")
        lines.append("")
    search = config.get("search")
    if search:
        lines += ["## Search", ""]
        for key in ("backbones", "sampler", "pruner", "trials"):
            if search.get(key) is not None:
                lines.append(f"- {key}: {md(search[key])}")
        space = search.get("space") or search.get("overrides") or {}
        if space:
            lines += ["", "| parameter | searched over |", "| --- | --- |"]
            lines += [f"| {md(k)} | {md(v)} |" for k, v in space.items()]
        lines.append("")
    lines += ["## Best parameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {md(k)} | {md(v)} |" for k, v in (config.get("params") or {}).items()]
    lines += ["", "## Preprocessing", "", "What the automl_pt model (and an onnx / torchscript export) "
              "takes: " + config["preprocessing"]["steps"] + ".", "",
              "Settings: `" + json.dumps({k: v for k, v in config["preprocessing"].items()
                                         if k not in ("steps", "fingerprint")}) + "`", ""]
    if config.get("inputs"):
        lines += ["Model inputs: " + ", ".join(f"`{i['name']}` {i['dtype']} {i['shape']}"
                                               for i in config["inputs"]) + "; output: "
                  + ((support.output_text(config) if support is not None else None)
                     or output_text(config)) + ".", ""]
    if config.get("head"):
        lines += [f"The head (`head.safetensors`: {', '.join(config['head']['keys'])}) is a linear "
                  f"layer over the backbone's features, {config['head']['applied_to']}; it is not "
                  "a transformers head, so the snippet applies it by hand"
                  + (" (its weight and bias already hold the target's scaling: it outputs numbers "
                     "in the target's units)" if config.get("task_kind") == "regression" else "")
                  + ".", ""]
    lines += support.card_notes(config)
    snippet = load_snippet(config, folder, support).rstrip()
    fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"`+", snippet)), default=0))
    lines += ["## How to load", "", f"{fence}python", snippet, fence, "",
              f"Everything about this export is in `{EXPORT_CONFIG}`.", ""]
    return "\n".join(lines)


#: what an onnx / torchscript export's output is, by task kind
OUTPUTS = {"classification": "`logits` (batch, labels), softmax gives probabilities",
           "regression": "`values` (batch, 1), the predicted number in the target's units (the "
                         "target's mean and standard deviation are folded into the final linear layer)",
           "multilabel": "`probabilities` (batch, labels), one sigmoid per label; a label is "
                         "predicted where its probability reaches its threshold (`thresholds` in "
                         f"`{EXPORT_CONFIG}`)"}


def output_text(config: dict[str, Any]) -> str:
    """What an onnx / torchscript export outputs: the built-in kinds' sentence, else the
    outputs as the export recorded them (name and shape)."""
    kind = config.get("task_kind", "classification")
    if kind in OUTPUTS:
        return OUTPUTS[kind]
    outputs = config.get("outputs") or []
    return ", ".join(f"`{o.get('name')}` {o.get('shape', '')}".rstrip() for o in outputs) or "see the task's documentation"


def what_it_predicts(config: dict[str, Any]) -> str:
    """The card's first sentence: what the model predicts for each input, by task kind."""
    modality, labels = md(config.get("modality")), config["labels"]
    kind = config.get("task_kind", "classification")
    metric = code(config.get("metric"))
    if kind == "regression":
        return (f"A {modality} regression model: it predicts one number per example, the value of "
                f"{code(labels[0])} in that column's own units, scored by {metric}.")
    if kind == "multilabel":
        return (f"A {modality} multi-label model: it predicts a set of labels per example, any of "
                f"{len(labels)} labels ({', '.join(map(md, labels))}), each one whose probability "
                f"reaches its own threshold (tuned on validation), scored by {metric}.")
    if kind not in OUTPUTS:   # a plugin's task kind
        return (f"A {modality} {md(kind.replace('_', ' '))} model over {len(labels)} labels "
                f"({', '.join(map(md, labels))}), scored by {metric}.")
    return (f"A {modality} classifier: it predicts one of {len(labels)} labels "
            f"({', '.join(map(md, labels))}) per example, scored by {metric}.")


def task_details(config: dict[str, Any]) -> list[str]:
    """The card's section on the task's outputs: a regression's target scaling, a multi-label
    model's thresholds (none for classification)."""
    kind = config.get("task_kind", "classification")
    if kind == "regression" and config.get("target"):
        t = config["target"]
        folded = ("automl_pt.load applies it" if config.get("written_as") == "native" else
                  "it is folded into the final linear layer's weight and bias, so this model "
                  "outputs numbers in the target's units with no extra step")
        return ["## Target", "", f"Training targets of {code(t['column'])} had mean {t['mean']:.6g} "
                f"and standard deviation {t['std']:.6g}; the model was trained on standardised "
                f"targets and {folded}.", ""]
    if kind == "multilabel" and config.get("thresholds"):
        lines = ["## Thresholds", "", "Label *j* is predicted when its probability (sigmoid of its "
                 f"output) is at least its threshold, tuned on validation for that label's F1 (also "
                 f"in `{EXPORT_CONFIG}`, `thresholds`).", "", "| label | threshold |", "| --- | --- |"]
        lines += [f"| {md(k)} | {v:.2f} |" for k, v in config["thresholds"].items()]
        return lines + [""]
    return []


def load_snippet(config: dict[str, Any], folder: Path, support: ExportSupport) -> str:
    """Python that loads the folder in its format and predicts (runs as written). The inputs,
    library formats' snippets and onnx / torchscript preprocessing come from the backbone's
    plugin (``support``)."""
    fmt = config["written_as"]
    where = repr(str(folder))
    kind = config.get("task_kind", "classification")
    if fmt == "native":
        shown = "values" if kind == "regression" else "labels"
        return (f"import automl_pt\n\nmodel = automl_pt.load({where})\n"
                f"prediction = model.predict({support.example})\nprint(prediction.{shown})\n")
    if fmt in ("onnx", "torchscript"):
        # the file's output, as recorded (a plugin's task may name it: log_probs, head_outputs)
        output = ((config.get("outputs") or [{}])[0].get("name")
                  or {"regression": "values", "multilabel": "probabilities"}.get(kind, "logits"))
        run = ("import onnxruntime as ort\n", "session = ort.InferenceSession(f\"{folder}/model.onnx\")\n",
               f"{output} = session.run([\"{output}\"], inputs)[0]\n") if fmt == "onnx" else (
               "import torch\n", "model = torch.jit.load(f\"{folder}/model.pt\")\n",
               "with torch.no_grad():\n"
               f"    {output} = model(*(torch.from_numpy(inputs[i[\"name\"]]) for i in config[\"inputs\"])).numpy()\n")
        prep = support.tensor_snippet(config)
        return ("import json\nimport numpy as np\n" + run[0] + f"\nfolder = {where}\n"
                f"config = json.load(open(f\"{{folder}}/{EXPORT_CONFIG}\"))\n" + run[1] + prep + run[2] +
                (support.tensor_answer(config) or _tensor_answer(kind, output)))
    snippet = support.library_snippet(fmt, config, where)
    if snippet is None:
        raise ExportFormatError(f"no load snippet for format {fmt!r}")
    return snippet


def _tensor_answer(kind: str, output: str) -> str:
    """The end of an onnx / torchscript snippet: the file's output (numpy, named ``output``) as
    the task's answer; a plugin's task kind whose plugin says nothing more: its shape."""
    if kind not in OUTPUTS:
        return (f"print({output}.shape)  # {output}: see 'outputs' in {EXPORT_CONFIG} and the "
                "task's documentation\n")
    if kind == "regression":
        return "print(values[:, 0].tolist())  # in the target's units\n"
    if kind == "multilabel":
        return ("thresholds = config[\"thresholds\"]  # label -> threshold, tuned on validation\n"
                "labels = [[n for n, p in zip(config[\"labels\"], row) if p >= thresholds[n]]\n"
                "          for row in probabilities.tolist()]\nprint(labels)\n")
    return answer_snippet({"task_kind": kind}, "logits", "config[\"labels\"]", torch=False)
