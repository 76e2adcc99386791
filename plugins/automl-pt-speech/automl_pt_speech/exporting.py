"""What ``automl-pt export`` needs to know about audio backbones: sample waveforms to trace
with, the preprocessing, the pooling before the head, and the model card's snippets for the
``hf`` folder (wav2vec2-family with mean pooling end to end; Whisper's encoder) and for ``onnx`` /
``torchscript``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from automl_pt.export.support import ExportSupport, answer_snippet


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


class AudioExportSupport(ExportSupport):
    example = '["clip.wav"]  # audio paths'
    preprocessing_steps = ("mono; resample to sample_rate; int16 PCM padded with zeros (or cut) to "
                           "max_samples; length = valid samples. Front-end (spectrogram / "
                           "normalisation) is inside the model")

    def sample_inputs(self, n: int, seed: int) -> list[Any]:
        """Noise waveforms of different lengths at the model's rate."""
        rng = np.random.default_rng(seed)
        return [(0.3 * rng.standard_normal(4000 + 1500 * i)).astype(np.float32) for i in range(n)]

    def describe_head(self, backbone: Any) -> dict[str, Any]:
        """What the head sees (the pooling over valid frames), and for waveform encoders the
        settings the card's snippet reproduces (per-clip normalisation, attention mask)."""
        kind = getattr(getattr(backbone, "pool", None), "kind", None)
        out: dict[str, Any] = {"applied_to": f"{kind} pooling of the last hidden state over valid frames"
                               if kind else "the backbone's pooled features"}
        waveform = {"normalize": getattr(backbone, "normalize", None),
                    "attention_mask": getattr(backbone, "use_mask", None), "pooling": kind}
        if isinstance(waveform["normalize"], bool):
            out["waveform"] = waveform
        return out

    def finish_library_folder(self, fmt: str, directory: Path, label_names: list[str],
                              task_kind: str = "classification") -> None:
        if fmt == "hf" and task_kind in PROBLEM_TYPES:  # a transcriber has no labels
            set_transformers_labels(directory, label_names, task_kind)

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        if fmt != "hf":
            return None
        if config.get("task_kind") == "speech_recognition":
            return ("import soundfile as sf\nimport soxr  # the resampler the model was trained with\n"
                    f"from transformers import pipeline\n\nasr = pipeline(\"automatic-speech-recognition\", "
                    f"model={where})\n"
                    "data, sr = sf.read(\"clip.wav\", dtype=\"float32\", always_2d=True)\n"
                    "wave = soxr.resample(data.mean(1), sr, 16000, quality=\"HQ\") if sr != 16000 else data.mean(1)\n"
                    "print(asr({\"raw\": wave, \"sampling_rate\": 16000})[\"text\"])  # the transcript\n")
        waveform = (config.get("head") or {}).get("waveform")
        if waveform and waveform["pooling"] == "mean":
            return _waveform_hf_snippet(where, waveform, config)
        return (f"from transformers import AutoConfig, AutoModel\n\nfolder = {where}\n"
                "config = AutoConfig.from_pretrained(folder)  # id2label holds the label names\n"
                "if config.model_type == \"whisper\":\n"
                "    from transformers.models.whisper.modeling_whisper import WhisperEncoder as Model\n"
                "else:\n    Model = AutoModel\n"
                "encoder = Model.from_pretrained(folder).eval()\n"
                "# features: the pooled last hidden state (see automl_pt_export.json, 'head'; Whisper:\n"
                "# log-mel of the clip padded to an even frame count, first positional embeddings);\n"
                "# logits = features @ W.T + b with W, b from head.safetensors (linear.weight, linear.bias)\n"
                + _WHAT_LOGITS_MEAN[config.get("task_kind", "classification")] +
                "print(type(encoder).__name__, config.id2label)\n")

    def tensor_answer(self, config: dict[str, Any]) -> str | None:
        """Speech recognition: greedy CTC decoding of ``log_probs``, or Whisper's greedy
        decoding with ``decoder.onnx`` on ``encoder_hidden_states`` (the prefix, suppressed
        tokens and end token of ``decoding``), then the tokenizer; other tasks: the core's."""
        if config.get("task_kind") != "speech_recognition":
            return None
        if "decoding" not in config:
            return _CTC_ANSWER
        return _SEQ2SEQ_ANSWER

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        return ("import soundfile as sf\nimport soxr  # the resampler the model was trained with\n"
                "rate, n = config[\"preprocessing\"][\"sample_rate\"], config[\"preprocessing\"][\"max_samples\"]\n\n"
                "def pcm(path):\n"
                "    data, sr = sf.read(path, dtype=\"float32\", always_2d=True)\n"
                "    wave = soxr.resample(data.mean(1), sr, rate, quality=\"HQ\") if sr != rate else data.mean(1)\n"
                "    return np.clip(np.round(wave[:n] * 32767), -32768, 32767).astype(np.int16)\n\n"
                f"clips = [pcm(p) for p in {self.example.split('  #')[0]}]\n"
                "# a model that masks padding reads a batch as long as its longest clip, as predict does\n"
                "width = max(len(c) for c in clips) if config[\"preprocessing\"].get(\"trim\") else n\n"
                "inputs = {\"audio\": np.stack([np.pad(c, (0, width - len(c))) for c in clips]),\n"
                "          \"length\": np.array([max(1, len(c)) for c in clips], dtype=np.int64)}\n")


#: the whisper hf card's comment on what the head's outputs are, by task kind
_WHAT_LOGITS_MEAN = {
    "classification": "# softmax(logits) gives each label's probability\n",
    "regression": "# logits[:, 0] is the predicted number in the target's units (the head is scaled back)\n",
    "multilabel": "# sigmoid(logits) gives each label's probability; a label is predicted where it\n"
                  "# reaches its threshold (automl_pt_export.json, 'thresholds')\n",
}


def _waveform_hf_snippet(where: str, waveform: dict[str, Any], config: dict[str, Any]) -> str:
    """wav2vec2-family encoder from transformers + mean pooling over valid frames + the head,
    reproducing the plugin's preprocessing (int16 PCM, per-clip normalisation)."""
    norm = ("m = mask.float()\n"
            "count = m.sum(1, keepdim=True).clamp(min=1)\n"
            "mean = (audio * m).sum(1, keepdim=True) / count\n"
            "var = (((audio - mean) * m) ** 2).sum(1, keepdim=True) / count\n"
            "audio = (audio - mean) / torch.sqrt(var + 1e-7) * m\n") if waveform["normalize"] else ""
    mask_arg = "mask.long()" if waveform["attention_mask"] else "None"
    prep = config["preprocessing"]
    return ("import numpy as np\nimport soundfile as sf\nimport torch\n"
            "import soxr\nfrom safetensors.torch import load_file\n"
            f"from transformers import AutoModel\n\nfolder = {where}\n"
            "encoder = AutoModel.from_pretrained(folder).eval()\n"
            f"rate, n = {prep['sample_rate']}, {prep['max_samples']}  # sample rate, samples per clip\n\n"
            "def pcm(path):  # mono, resampled, 16-bit, cut to n samples\n"
            "    data, sr = sf.read(path, dtype=\"float32\", always_2d=True)\n"
            "    wave = soxr.resample(data.mean(1), sr, rate, quality=\"HQ\") if sr != rate else data.mean(1)\n"
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
            "names = [encoder.config.id2label[i] for i in range(len(encoder.config.id2label))]\n"
            + answer_snippet(config, "logits", "names"))


#: the end of a CTC transcriber's onnx / torchscript card: greedy CTC decoding in numpy
_CTC_ANSWER = (
    "chars = config[\"labels\"]  # class 0 is the CTC blank, class k is chars[k - 1]\n"
    "texts = []\n"
    "for row, frames in zip(log_probs.argmax(-1), ~np.isnan(log_probs[..., 0])):\n"
    "    best = row[frames]  # the clip's frames (NaN after its end)\n"
    "    keep = (best != 0) & np.r_[True, best[1:] != best[:-1]]  # repeats merged, blanks dropped\n"
    "    texts.append(\"\".join(chars[k - 1] for k in best[keep]))\n"
    "print(texts)\n")

#: the end of a Whisper transcriber's onnx card: greedy decoding with decoder.onnx
_SEQ2SEQ_ANSWER = (
    "from transformers import AutoTokenizer\n\n"
    "decoding = config[\"decoding\"]  # what greedy decoding used in the study\n"
    "decoder = ort.InferenceSession(f\"{folder}/decoder.onnx\")\n"
    "tokens = np.array([decoding[\"prefix\"]] * len(encoder_hidden_states), dtype=np.int64)\n"
    "done = np.zeros(len(tokens), dtype=bool)\n"
    "for step in range(decoding[\"max_new_tokens\"]):\n"
    "    logits = decoder.run([\"logits\"], {\"input_ids\": tokens,\n"
    "                                      \"encoder_hidden_states\": encoder_hidden_states})[0][:, -1]\n"
    "    logits[:, decoding[\"suppress_tokens\"]] = -np.inf\n"
    "    if step == 0:\n"
    "        logits[:, decoding[\"begin_suppress_tokens\"]] = -np.inf\n"
    "    new = np.where(done, decoding[\"eos\"], logits.argmax(-1))\n"
    "    tokens = np.concatenate([tokens, new[:, None]], axis=1)\n"
    "    done |= new == decoding[\"eos\"]\n"
    "    if done.all():\n"
    "        break\n"
    "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
    "texts = [t.strip() for t in tokenizer.batch_decode(tokens, skip_special_tokens=True)]\n"
    "print(texts)\n")
