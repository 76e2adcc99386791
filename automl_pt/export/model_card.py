"""The model card (``README.md``) of an export folder: what the model is, how well it did, how it
was found, and a "how to load" snippet for its format that runs as written (the tests execute
every one of them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .support import EXPORT_CONFIG, ExportFormatError, ExportSupport


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
    labels = config["labels"]
    metrics = config.get("metrics") or {}
    lines = [f"# {md(config.get('study'))}: {md(config.get('task'))} ({md(config.get('format'))} export)",
             "", f"A {md(config.get('modality'))} classifier over {len(labels)} labels "
             f"({', '.join(map(md, labels))}), fine-tuned from {code(config.get('backbone'))} "
             f"({md(config.get('backbone_source'))}) by automl_pt.", ""]
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
                                               for i in config["inputs"]) + "; output: `logits` "
                  "(batch, labels), softmax gives probabilities.", ""]
    if config.get("head"):
        lines += [f"The head (`head.safetensors`: {', '.join(config['head']['keys'])}) is a linear "
                  f"layer over the backbone's features, {config['head']['applied_to']}; it is not "
                  "a transformers head, so the snippet applies it by hand.", ""]
    snippet = load_snippet(config, folder, support or ExportSupport()).rstrip()
    fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"`+", snippet)), default=0))
    lines += ["## How to load", "", f"{fence}python", snippet, fence, "",
              f"Everything about this export is in `{EXPORT_CONFIG}`.", ""]
    return "\n".join(lines)


def load_snippet(config: dict[str, Any], folder: Path, support: ExportSupport) -> str:
    """Python that loads the folder in its format and predicts (runs as written). The inputs,
    library formats' snippets and onnx / torchscript preprocessing come from the backbone's
    plugin (``support``)."""
    fmt = config["written_as"]
    where = repr(str(folder))
    if fmt == "native":
        return (f"import automl_pt\n\nmodel = automl_pt.load({where})\n"
                f"prediction = model.predict({support.example})\nprint(prediction.labels)\n")
    if fmt in ("onnx", "torchscript"):
        run = ("import onnxruntime as ort\n", "session = ort.InferenceSession(f\"{folder}/model.onnx\")\n",
               "logits = session.run([\"logits\"], inputs)[0]\n") if fmt == "onnx" else (
               "import torch\n", "model = torch.jit.load(f\"{folder}/model.pt\")\n",
               "with torch.no_grad():\n"
               "    logits = model(*(torch.from_numpy(inputs[i[\"name\"]]) for i in config[\"inputs\"])).numpy()\n")
        prep = support.tensor_snippet(config)
        return ("import json\nimport numpy as np\n" + run[0] + f"\nfolder = {where}\n"
                f"config = json.load(open(f\"{{folder}}/{EXPORT_CONFIG}\"))\n" + run[1] + prep + run[2] +
                "probabilities = np.exp(logits - logits.max(1, keepdims=True))\n"
                "probabilities /= probabilities.sum(1, keepdims=True)\n"
                "print([config[\"labels\"][i] for i in probabilities.argmax(1)])\n")
    snippet = support.library_snippet(fmt, config, where)
    if snippet is None:
        raise ExportFormatError(f"no load snippet for format {fmt!r}")
    return snippet
