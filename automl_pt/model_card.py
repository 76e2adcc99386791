"""The model card (``README.md``) of an export folder: what the model is, how well it did, how it
was found, and a "how to load" snippet for its format that runs as written (the tests execute
every one of them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .formats import EXPORT_CONFIG, ExportFormatError


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


def model_card(config: dict[str, Any], folder: Path) -> str:
    """The folder's ``README.md``: what the model is, how well it did, how it was found, and a
    snippet that loads it in its format. Every value from the data or the study (labels, paths,
    names, parameter values) is escaped (:func:`md`, :func:`code`)."""
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
    snippet = load_snippet(config, folder).rstrip()
    fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"`+", snippet)), default=0))
    lines += ["## How to load", "", f"{fence}python", snippet, fence, "",
              f"Everything about this export is in `{EXPORT_CONFIG}`.", ""]
    return "\n".join(lines)


def load_snippet(config: dict[str, Any], folder: Path) -> str:
    """Python that loads the folder in its format and predicts (runs as written)."""
    fmt, modality = config["written_as"], config["modality"]
    where = repr(str(folder))
    example = {"text": '["an example text", "another one"]',
               "image": '["photo.png"]  # image paths', "audio": '["clip.wav"]  # audio paths'}[modality]
    if fmt == "native":
        return (f"import automl_pt\n\nmodel = automl_pt.load({where})\n"
                f"prediction = model.predict({example})\nprint(prediction.labels)\n")
    head_py = ("head = load_file(f\"{folder}/head.safetensors\")\n"
               "logits = features @ head[\"linear.weight\"].T + head[\"linear.bias\"]\n")
    if fmt == "hf" and modality == "text":
        return (f"import json\nimport torch\nfrom safetensors.torch import load_file\n"
                f"from transformers import AutoModel, AutoTokenizer\n\nfolder = {where}\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                "encoder = AutoModel.from_pretrained(folder).eval()\n"
                f"texts = {example}\n"
                "batch = tokenizer(texts, padding=True, truncation=True, "
                f"max_length={config['preprocessing'].get('max_length', 512)}, return_tensors=\"pt\")\n"
                "with torch.no_grad():\n"
                "    hidden = encoder(**batch).last_hidden_state\n"
                "mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
                "features = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # masked mean\n"
                + head_py +
                "probabilities = logits.softmax(-1)\n"
                "labels = [encoder.config.id2label[i] for i in probabilities.argmax(-1).tolist()]\n"
                "print(labels)\n")
    if fmt == "hf":  # audio
        waveform = (config.get("head") or {}).get("waveform")
        if waveform and waveform["pooling"] == "mean":
            return _waveform_hf_snippet(where, waveform, config["preprocessing"])
        return (f"from transformers import AutoConfig, AutoModel\n\nfolder = {where}\n"
                "config = AutoConfig.from_pretrained(folder)  # id2label holds the label names\n"
                "if config.model_type == \"whisper\":\n"
                "    from transformers.models.whisper.modeling_whisper import WhisperEncoder as Model\n"
                "else:\n    Model = AutoModel\n"
                "encoder = Model.from_pretrained(folder).eval()\n"
                "# features: the pooled last hidden state (see automl_pt_export.json, 'head'; Whisper:\n"
                "# log-mel of the clip padded to an even frame count, first positional embeddings);\n"
                "# logits = features @ W.T + b with W, b from head.safetensors (linear.weight, linear.bias)\n"
                "print(type(encoder).__name__, config.id2label)\n")
    if fmt == "timm":
        return (f"import timm\nimport torch\nfrom PIL import Image\n\nfolder = {where}\n"
                "model = timm.create_model(f\"local-dir:{folder}\", pretrained=True).eval()  # head = its classifier\n"
                "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))\n"
                f"images = {example}\n"
                "batch = torch.stack([transform(Image.open(p).convert(\"RGB\")) for p in images])\n"
                "with torch.no_grad():\n    probabilities = model(batch).softmax(-1)\n"
                "labels = [model.pretrained_cfg[\"label_names\"][i] for i in probabilities.argmax(-1).tolist()]\n"
                "print(labels)\n")
    if fmt in ("onnx", "torchscript"):
        run = ("import onnxruntime as ort\n", "session = ort.InferenceSession(f\"{folder}/model.onnx\")\n",
               "logits = session.run([\"logits\"], inputs)[0]\n") if fmt == "onnx" else (
               "import torch\n", "model = torch.jit.load(f\"{folder}/model.pt\")\n",
               "with torch.no_grad():\n"
               "    logits = model(*(torch.from_numpy(inputs[i[\"name\"]]) for i in config[\"inputs\"])).numpy()\n")
        prep = _preprocess_snippet(modality, example)
        return ("import json\nimport numpy as np\n" + run[0] + f"\nfolder = {where}\n"
                f"config = json.load(open(f\"{{folder}}/{EXPORT_CONFIG}\"))\n" + run[1] + prep + run[2] +
                "probabilities = np.exp(logits - logits.max(1, keepdims=True))\n"
                "probabilities /= probabilities.sum(1, keepdims=True)\n"
                "print([config[\"labels\"][i] for i in probabilities.argmax(1)])\n")
    raise ExportFormatError(f"no load snippet for format {fmt!r}")


def _waveform_hf_snippet(where: str, waveform: dict[str, Any], prep: dict[str, Any]) -> str:
    """wav2vec2-family encoder from transformers + mean pooling over valid frames + the head,
    reproducing the plugin's preprocessing (int16 PCM, per-clip normalisation)."""
    norm = ("m = mask.float()\n"
            "count = m.sum(1, keepdim=True).clamp(min=1)\n"
            "mean = (audio * m).sum(1, keepdim=True) / count\n"
            "var = (((audio - mean) * m) ** 2).sum(1, keepdim=True) / count\n"
            "audio = (audio - mean) / torch.sqrt(var + 1e-7) * m\n") if waveform["normalize"] else ""
    mask_arg = "mask.long()" if waveform["attention_mask"] else "None"
    return ("import numpy as np\nimport soundfile as sf\nimport torch\n"
            "from safetensors.torch import load_file\nfrom scipy.signal import resample_poly\n"
            f"from transformers import AutoModel\n\nfolder = {where}\n"
            "encoder = AutoModel.from_pretrained(folder).eval()\n"
            f"rate, n = {prep['sample_rate']}, {prep['max_samples']}  # sample rate, samples per clip\n\n"
            "def pcm(path):  # mono, resampled, 16-bit, cut to n samples\n"
            "    data, sr = sf.read(path, dtype=\"float32\", always_2d=True)\n"
            "    wave = resample_poly(data.mean(1), rate, sr) if sr != rate else data.mean(1)\n"
            "    return np.clip(np.round(wave[:n] * 32767), -32768, 32767) / 32768\n\n"
            "clips = [pcm(p) for p in [\"clip.wav\"]]  # audio paths\n"
            "length = torch.tensor([max(1, len(c)) for c in clips])\n"
            "audio = torch.tensor(np.stack([np.pad(c, (0, n - len(c))) for c in clips]), dtype=torch.float32)\n"
            "mask = torch.arange(n)[None, :] < length[:, None]\n" + norm +
            "with torch.no_grad():\n"
            f"    hidden = encoder(input_values=audio, attention_mask={mask_arg}).last_hidden_state\n"
            "frames = encoder._get_feat_extract_output_lengths(length).clamp(1, hidden.shape[1])\n"
            "valid = (torch.arange(hidden.shape[1])[None, :] < frames[:, None]).unsqueeze(-1).float()\n"
            "features = (hidden * valid).sum(1) / valid.sum(1)  # mean over valid frames\n"
            "head = load_file(f\"{folder}/head.safetensors\")\n"
            "logits = features @ head[\"linear.weight\"].T + head[\"linear.bias\"]\n"
            "probabilities = logits.softmax(-1)\n"
            "print([encoder.config.id2label[i] for i in probabilities.argmax(-1).tolist()])\n")


def _preprocess_snippet(modality: str, example: str) -> str:
    if modality == "text":
        return ("from transformers import AutoTokenizer\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
                f"texts = {example}\n"
                "enc = tokenizer(texts, padding=True, truncation=True, "
                "max_length=config[\"preprocessing\"][\"max_length\"], return_tensors=\"np\")\n"
                "inputs = {\"input_ids\": enc[\"input_ids\"].astype(np.int64),\n"
                "          \"attention_mask\": enc[\"attention_mask\"].astype(np.int64)}\n")
    if modality == "image":
        return ("from PIL import Image\n"
                "cfg = config[\"preprocessing\"][\"data_config\"]\n"
                "_, height, width = cfg[\"input_size\"]\n"
                "resample = {\"bilinear\": Image.BILINEAR, \"bicubic\": Image.BICUBIC}.get("
                "cfg[\"interpolation\"], Image.BICUBIC)\n\n"
                "def pixels(path):\n"
                "    image = Image.open(path).convert(\"RGB\")\n"
                "    side = int(height / cfg[\"crop_pct\"])\n"
                "    w, h = image.size\n"
                "    size = (side, max(1, int(side * h / w))) if w <= h else (max(1, int(side * w / h)), side)\n"
                "    image = image.resize(size, resample, reducing_gap=3.0)\n"
                "    left, top = round((image.width - width) / 2), round((image.height - height) / 2)\n"
                "    image = image.crop((left, top, left + width, top + height))\n"
                "    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)\n\n"
                f"images = {example}\n"
                "inputs = {\"pixel_values\": np.stack([pixels(p) for p in images])}\n")
    return ("import soundfile as sf\nfrom scipy.signal import resample_poly\n"
            "rate, n = config[\"preprocessing\"][\"sample_rate\"], config[\"preprocessing\"][\"max_samples\"]\n\n"
            "def pcm(path):\n"
            "    data, sr = sf.read(path, dtype=\"float32\", always_2d=True)\n"
            "    wave = resample_poly(data.mean(1), rate, sr) if sr != rate else data.mean(1)\n"
            "    wave = np.clip(np.round(wave[:n] * 32767), -32768, 32767).astype(np.int16)\n"
            "    return np.pad(wave, (0, n - len(wave))), max(1, len(wave))\n\n"
            f"clips = [pcm(p) for p in {example.split('  #')[0]}]\n"
            "inputs = {\"audio\": np.stack([c[0] for c in clips]),\n"
            "          \"length\": np.array([c[1] for c in clips], dtype=np.int64)}\n")
