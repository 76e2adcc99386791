"""Transformers audio encoders as automl_pt backbones.

Every backbone takes the same batch, made once per study by :class:`AudioPreprocessor`:
``audio`` (``(B, samples)`` int16 PCM or float waveform at the backbone's rate) and ``length``
(valid samples). Front-ends run on the device inside :meth:`AudioBackbone.hidden`:

* :class:`WhisperEncoderBackbone`: log-mel spectrogram (Whisper's exact recipe, in torch) + the
  Whisper encoder. ``window`` is the encoder's input window in seconds: ``None`` ("auto", the
  default) runs the encoder on a window sized to the clip (the preprocessor's fitted maximum
  duration), using the first positional embeddings only; ``30`` reproduces Whisper's 30-second
  window (the clip padded with silence).
* :class:`WaveformBackbone`: wav2vec2, HuBERT, WavLM, data2vec-audio... on the raw waveform
  (normalised per clip when the checkpoint expects it; an attention mask where the model supports
  one).
* :class:`ASTBackbone`: Audio Spectrogram Transformer on Kaldi-style filter banks.

Pooling over time (``mean`` or ``attention``) is the trial's ``pooling`` hyperparameter. Attention
pooling starts as an exact mean (zero scores) so a frozen backbone gives mean-pooled features.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automl_pt.errors import BackboneError
from automl_pt.model import Backbone, Preprocessor

from .augment import as_float_audio
from .preprocess import AudioPreprocessor, load_saved_max_seconds

SETTINGS_FILE = "automl_pt_speech.json"
POOLING_FILE = "pooling.safetensors"
POOLINGS = ("mean", "attention")
WAVEFORM_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat",
                  "wav2vec2-conformer", "sew", "sew-d")
SUPPORTED_TYPES = ("whisper", "audio-spectrogram-transformer", *WAVEFORM_TYPES)
# last name parts of the encoders' attention projections (LoRA default / (IA)^3 targets)
QUERY_VALUE = {"q_proj", "v_proj", "query", "value"}
KEY_VALUE = {"k_proj", "v_proj", "key", "value"}
# waveform encoders whose layers take (hidden, attention mask) alone (WavLM's relative position
# bias, the conformer's rotary embeddings and SEW's down-sampling do not split this way)
PARTIAL_WAVEFORM_TYPES = ("wav2vec2", "hubert", "data2vec-audio", "unispeech", "unispeech-sat")


class Pooling(nn.Module):
    """Masked pooling of ``(B, T, D)`` hidden states over their valid frames."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        if kind not in POOLINGS:
            raise BackboneError(f"unknown pooling {kind!r}; choose from {', '.join(POOLINGS)}")
        self.kind = kind
        self.score = nn.Linear(dim, 1) if kind == "attention" else None
        if self.score is not None:
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < valid[:, None]
        if self.score is None:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        scores = self.score(hidden).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(hidden.dtype)
        return (weights.unsqueeze(-1) * hidden).sum(dim=1)


class _Captured(Exception):
    """Stops a forward pass once the activations :meth:`AudioBackbone.encode_bottom` wants
    are captured."""


def _run_layers(layers: Any, hidden: torch.Tensor, mask: Any) -> torch.Tensor:
    for layer in layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class AudioBackbone(Backbone):
    """Common part: pooling, settings carried into exported folders, preprocessor."""

    modality = "audio"
    sample_rate = 16000
    #: the backbone consumes a spectrogram (SpecAugment applies)
    takes_spectrogram = False
    #: the longest clip the front-end accepts, in seconds
    max_seconds_limit = 30.0
    #: a clip's features do not depend on the zeros padded after it (attention masks, or a
    #: front-end that cuts each clip to its length): batches may be trimmed to their longest clip
    masks_padding = False
    kind = ""
    #: parameters a trial adds on top of the encoder (attention pooling): a continued-pretraining
    #: checkpoint made with other pooling may lack them (see automl_pt.engine.pretrain)
    trial_modules = ("pool.",)

    def __init__(self, name: str, dim: int, pooling: str = "mean",
                 settings: dict[str, Any] | None = None):
        super().__init__()
        self.name = name
        self.feature_dim = int(dim)
        self.pool = Pooling(pooling, dim)
        # fitted values saved with an exported backbone (e.g. the maximum clip duration)
        self.settings = dict(settings or {})

    # -- features -------------------------------------------------------------------------
    def hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden (B, T, D), valid frames (B,))``."""
        raise NotImplementedError

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden, valid = self.hidden(batch)
        return self.pool(hidden, valid)

    @property
    def position_pooling(self) -> str | None:  # type: ignore[override]
        """``"mean"`` with the trial's mean pooling (the masked mean of the frames); attention
        pooling weighs them."""
        return "mean" if self.pool.kind == "mean" else None

    def encode_positions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's frames ``(B, T, D)``, cut to the batch's longest real clip, and a mask
        of each clip's frames (its samples through the front-end's strides: Whisper 320
        samples a frame, wav2vec2-style encoders ``_get_feat_extract_output_lengths``)."""
        hidden, valid = self.hidden(batch)
        hidden = hidden[:, :max(1, int(valid.max()))] if len(valid) else hidden
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < valid[:, None]
        return hidden, mask

    def spectrogram(self, audio: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def samples_per_frame(self) -> int | None:
        """Audio samples per frame of :meth:`encode_positions` (word timestamps of a CTC head);
        ``None`` where frames have no fixed duration. (Never raises: ``torch.jit.trace`` reads
        every attribute of a module.)"""
        return None

    # -- strategy "partial": front-end + layers[:L-k] below, layers[L-k:] + norm + pooling on top
    def layer_stack(self) -> nn.ModuleList:
        """The encoder's transformer layers (what ``num_blocks`` counts)."""
        raise BackboneError(f"strategy 'partial' is not available for the audio backbone "
                            f"{self.name!r} ({type(self).__name__}); leave 'partial' out of "
                            "[search.space] strategy")

    def num_blocks(self) -> int:
        return len(self.layer_stack())

    def encode_bottom(self, batch: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """:meth:`hidden` up to the input of layer ``L - k``, captured by a pre-hook that stops
        the forward pass there: the front-end and the lower layers run exactly as in
        :meth:`encode`. Returns ``hidden``, ``valid`` frames and what :meth:`top_inputs` adds."""
        layers = self.layer_stack()
        captured: dict[str, torch.Tensor] = {}

        def grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured["hidden"] = args[0] if args else kwargs["hidden_states"]
            raise _Captured

        handle = layers[len(layers) - k].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            self.hidden(batch)
        except _Captured:
            pass
        finally:
            handle.remove()
        hidden = captured["hidden"]
        return {"hidden": hidden, **self.top_inputs(batch, hidden)}

    def top_inputs(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the top needs besides the hidden states: ``valid`` frames per clip."""
        return {"valid": torch.full((hidden.shape[0],), hidden.shape[1], device=hidden.device)}

    def run_top(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        """Layers ``L - k`` .. ``L - 1`` and the encoder's final norm on ``hidden``."""
        raise NotImplementedError

    def encode_top(self, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        return self.pool(self.run_top(batch["hidden"], batch, k), batch["valid"])

    def final_modules(self) -> list[nn.Module]:
        """Modules after the layer stack (final norm, adapter)."""
        return []

    def top_modules(self, k: int) -> list[nn.Module]:
        layers = self.layer_stack()
        return [*layers[len(layers) - k:], *self.final_modules(), self.pool]

    # -- preprocessing / export -----------------------------------------------------------
    def preprocessor(self, options: dict) -> Preprocessor:
        return AudioPreprocessor(self.sample_rate, max_seconds=self.settings.get("max_seconds"),
                                 limit_seconds=self.max_seconds_limit, trim=self.masks_padding)

    def export(self, directory: Any) -> None:
        from safetensors.torch import save_file

        quiet_transformers()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_model(directory)
        settings = {**self.settings, "kind": self.kind, "pooling": self.pool.kind,
                    "sample_rate": self.sample_rate}
        (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        if self.pool.score is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.pool.state_dict().items()},
                      str(directory / POOLING_FILE))

    def save_model(self, directory: Path) -> None:
        raise NotImplementedError

    library_formats = ("hf",)

    def export_as(self, fmt: str, directory: Any, head: Any, label_names: list[str]) -> bool:
        """``hf``: the encoder's ``save_pretrained`` folder (plus this plugin's settings and
        pooling weights); pooling and head are shipped separately (returns ``False``)."""
        if fmt != "hf":
            return super().export_as(fmt, directory, head, label_names)
        self.export(directory)
        return False

    def peft_targets(self) -> dict[str, list[str]]:
        """LoRA / (IA)^3 targets in the encoder's layers (front-end convolutions, positional
        convolutions and pooling excluded): the attention's query and value projections by
        default (``q_proj`` / ``v_proj`` for Whisper and wav2vec2, ``query`` / ``value`` for
        AST), every linear layer with ``lora_targets = "all"``; keys, values and feed-forward
        down-projections (``fc2``, ``output_dense``) for (IA)^3."""
        from automl_pt.train.adapters import find_targets

        return find_targets(self, QUERY_VALUE, KEY_VALUE)

    def num_layers_and_ids(self) -> tuple[int, dict[str, int]]:
        """Front-end convolutions and embeddings are layer 0; pooling sits on top."""
        top, ids = super().num_layers_and_ids()
        front = re.compile(r"conv|feature_|masked_spec_embed|embed|patch|pos_")
        block = re.compile(r"(?:^|\.)(?:layer|layers)\.\d+\.")
        for name in ids:
            if name.startswith("pool."):
                ids[name] = top
            elif front.search(name) and not block.search(name):
                ids[name] = 0
        return top, ids


# -- Whisper ----------------------------------------------------------------------------------
class WhisperEncoderBackbone(AudioBackbone):
    """The Whisper encoder on a window sized to the clip (``window=None``) or ``window`` seconds."""

    takes_spectrogram = True
    kind = "whisper"
    hop_length = 160
    n_fft = 400

    def __init__(self, encoder: nn.Module, name: str, window: float | None = None,
                 pooling: str = "mean", settings: dict | None = None):
        super().__init__(name, encoder.config.d_model, pooling, settings)
        from transformers.audio_utils import mel_filter_bank

        self.encoder = encoder
        self.window = window
        positions = int(encoder.config.max_source_positions)
        self.max_seconds_limit = positions * 2 * self.hop_length / self.sample_rate
        if window is not None and not 0 < window <= self.max_seconds_limit:
            raise BackboneError(f"backbone {name!r}: window={window:g} s is outside (0, "
                                f"{self.max_seconds_limit:g}] s")
        filters = mel_filter_bank(num_frequency_bins=1 + self.n_fft // 2,
                                  num_mel_filters=encoder.config.num_mel_bins, min_frequency=0.0,
                                  max_frequency=8000.0, sampling_rate=self.sample_rate,
                                  norm="slaney", mel_scale="slaney")
        self.register_buffer("mel_filters", torch.from_numpy(filters.T.astype(np.float32)),
                             persistent=False)
        self.register_buffer("stft_window", torch.hann_window(self.n_fft), persistent=False)

    def spectrogram(self, audio: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel features ``(B, n_mels, frames)``: the clip padded to the window
        (or to an even number of frames), power STFT, Slaney mel, log10, max-8 floor, scaled."""
        audio = as_float_audio(audio)
        samples = audio.shape[1]
        step = 2 * self.hop_length  # the encoder's stride-2 convolution wants an even frame count
        if self.window is not None:
            target = max(step, int(math.ceil(int(round(self.window * self.sample_rate)) / step)) * step)
            audio = (audio[:, :target] if samples > target
                     else nn.functional.pad(audio, (0, target - samples)))
        else:   # integer arithmetic only: an onnx export keeps the clip length symbolic
            audio = nn.functional.pad(audio, (0, (samples + step - 1) // step * step - samples))
        with torch.autocast(audio.device.type, enabled=False):
            stft = torch.stft(audio, self.n_fft, self.hop_length, window=self.stft_window,
                              return_complex=True)
            power = stft[..., :-1].abs() ** 2
            mel = self.mel_filters @ power
            log_spec = torch.clamp(mel, min=1e-10).log10()
            peak = log_spec.amax(dim=(1, 2), keepdim=True)
            log_spec = torch.maximum(log_spec, peak - 8.0)
            return (log_spec + 4.0) / 4.0

    def hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = batch.get("input_features")
        if features is None:
            features = self.spectrogram(batch["audio"], batch["length"])
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(features.to(enc.conv1.weight.dtype)))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        frames = x.shape[1]
        if frames > enc.embed_positions.num_embeddings:
            raise BackboneError(f"backbone {self.name!r}: {frames} encoder positions needed, the "
                                f"model has {enc.embed_positions.num_embeddings}")
        x = x + enc.embed_positions.weight[:frames]  # the short window: first positions only
        x = nn.functional.dropout(x, p=enc.dropout, training=self.training)
        for layer in enc.layers:
            x = layer(x, None)
        x = enc.layer_norm(x)
        valid = torch.div(batch["length"] + 2 * self.hop_length - 1, 2 * self.hop_length,
                          rounding_mode="floor").clamp(1, frames)
        return x, valid

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per encoder frame (word timestamps of a CTC head)."""
        return 2 * self.hop_length

    def layer_stack(self) -> nn.ModuleList:
        return self.encoder.layers

    def top_inputs(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        valid = torch.div(batch["length"] + 2 * self.hop_length - 1, 2 * self.hop_length,
                          rounding_mode="floor").clamp(1, hidden.shape[1])
        return {"valid": valid}

    def run_top(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        layers = self.encoder.layers
        return self.encoder.layer_norm(_run_layers(layers[len(layers) - k:], hidden, None))

    def final_modules(self) -> list[nn.Module]:
        return [self.encoder.layer_norm]

    def set_dropout(self, p: float) -> None:
        """The encoder keeps Whisper's own setting (no dropout); the trial's ``dropout`` acts on
        the head only. Whisper was pretrained without dropout, and any inside the encoder stops
        it from learning: with p = 0.19 on the layers' residual branches only, an epoch of
        keyword fine-tuning stayed at chance (validation 0.10-0.26) where p = 0 reached 0.94."""
        return None

    def save_model(self, directory: Path) -> None:
        self.settings["window"] = self.window
        self.encoder.save_pretrained(str(directory), safe_serialization=True)


class WhisperSeq2SeqBackbone(WhisperEncoderBackbone):
    """Whisper with its decoder, for speech recognition (``decodes_text``): the encoder as in
    :class:`WhisperEncoderBackbone` (pooled and per-frame features too), plus
    :meth:`transcript_loss` (teacher forcing) and :meth:`transcribe` (``generate`` on the
    encoder's states, greedy or beam search). The full ``WhisperForConditionalGeneration`` is
    kept outside the module tree for ``generate`` and ``save_pretrained``: it shares these
    parameters, and the state dict holds each once (``encoder.*``, ``decoder.*``).

    Batches are trimmed to their longest clip (the window sized to the batch; Whisper was
    trained on zero-padded windows and its decoder reads the padding frames like silence), so
    training draws length-bucketed batches and inference runs sorted by length."""

    decodes_text = True
    kind = "whisper-seq2seq"

    def __init__(self, model: nn.Module, tokenizer: Any, name: str, window: float | None = None,
                 pooling: str = "mean", settings: dict | None = None):
        super().__init__(model.model.encoder, name, window, pooling, settings)
        self.decoder = model.model.decoder
        self.__dict__["_full"] = model   # not a submodule: shares the encoder's / decoder's parameters
        self.tokenizer = tokenizer
        gen = model.generation_config
        forced = [t for _, t in (getattr(gen, "forced_decoder_ids", None) or [])]
        self.prefix = [int(gen.decoder_start_token_id), *forced]
        self.eot = int(gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0])
        self.max_target = int(model.config.max_target_positions)

    def preprocessor(self, options: dict) -> Preprocessor:
        return AudioPreprocessor(self.sample_rate, max_seconds=self.settings.get("max_seconds"),
                                 limit_seconds=self.max_seconds_limit, trim=self.window is None)

    def train_only(self, strategy: str, top_encoder_layers: int = 2) -> None:
        """Freeze for a speech-recognition strategy: ``decoder`` (the encoder frozen),
        ``encoder_top`` (the decoder and the top ``top_encoder_layers`` encoder layers and final
        norm), anything else trains everything the core's strategy leaves trainable."""
        if strategy not in ("decoder", "encoder_top"):
            return
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        if strategy == "encoder_top":
            layers = self.encoder.layers
            k = max(1, min(int(top_encoder_layers), len(layers)))
            for module in [*layers[len(layers) - k:], self.encoder.layer_norm]:
                for p in module.parameters():
                    p.requires_grad_(True)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """``<|startoftranscript|><|notimestamps|> text <|endoftext|>`` per transcript (the
        text after a space, as Whisper transcribes), cut to the decoder's positions."""
        out = []
        for t in texts:
            ids = self.tokenizer.encode(" " + t.strip(), add_special_tokens=False)
            out.append((self.prefix + ids)[:self.max_target - 1] + [self.eot])
        return out

    def transcript_loss(self, batch: dict[str, torch.Tensor], texts: list[str]) -> torch.Tensor:
        """Mean token cross-entropy of the transcripts given the audio (teacher forcing; the
        prefix tokens are not scored)."""
        hidden, _ = self.hidden(batch)
        ids = self.token_ids(texts)
        width = max(len(i) for i in ids)
        inputs = torch.full((len(ids), width - 1), self.eot, dtype=torch.long)
        labels = torch.full((len(ids), width - 1), -100, dtype=torch.long)
        for row, seq in enumerate(ids):
            inputs[row, :len(seq) - 1] = torch.tensor(seq[:-1])
            labels[row, len(self.prefix) - 1:len(seq) - 1] = torch.tensor(seq[len(self.prefix):])
        inputs, labels = inputs.to(hidden.device), labels.to(hidden.device)
        states = self.decoder(input_ids=inputs, encoder_hidden_states=hidden).last_hidden_state
        logits = nn.functional.linear(states, self.decoder.embed_tokens.weight).float()
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                           ignore_index=-100)

    def generation_limit(self, max_new_tokens: int) -> int:
        """The most tokens a transcript gets: ``max_new_tokens``, within what the decoder's
        positions leave after the prefix and the end token."""
        return max(1, min(int(max_new_tokens), self.max_target - len(self.prefix) - 1))

    @torch.no_grad()
    def transcribe(self, batch: dict[str, torch.Tensor], num_beams: int = 1,
                   max_new_tokens: int = 128, word_timestamps: bool = False) -> list[Any]:
        """The transcripts of a batch (``generate`` with Whisper's generation config: its
        suppressed tokens, no timestamp tokens). ``word_timestamps``: each a pair ``(text,
        words)``, the words with their start and end in seconds from the cross-attention of the
        model's alignment heads (transformers' ``return_token_timestamps``: dynamic time warping
        over the clip's frames)."""
        from transformers.modeling_outputs import BaseModelOutput

        hidden, _ = self.hidden(batch)
        limit = self.generation_limit(max_new_tokens)
        encoded = BaseModelOutput(last_hidden_state=hidden)
        if not word_timestamps:
            ids = self._full.generate(encoder_outputs=encoded, num_beams=int(num_beams), max_new_tokens=limit)
            return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        if not getattr(self._full.generation_config, "alignment_heads", None):
            raise BackboneError(f"backbone {self.name!r}: its generation config names no alignment "
                                "heads, so Whisper's word timestamps are not available")
        # the clip's log-mel frames: the time warping reads only those
        mel_frames = 2 * hidden.shape[1]
        valid = torch.div(batch["length"] + self.hop_length - 1, self.hop_length,
                          rounding_mode="floor").clamp(1, mel_frames)
        mask = (torch.arange(mel_frames, device=hidden.device)[None, :] < valid[:, None]).long()
        config = self._full.config
        attention = config._attn_implementation   # timestamps switch it to eager: switched back
        try:
            out = self._full.generate(encoder_outputs=encoded, num_beams=int(num_beams),
                                      max_new_tokens=limit, return_token_timestamps=True,
                                      attention_mask=mask)
        finally:
            config._attn_implementation = attention
        return [self._timed_words(ids.tolist(), times.tolist())
                for ids, times in zip(out["sequences"], out["token_timestamps"])]

    def _timed_words(self, ids: list[int], times: list[float]) -> tuple[str, list[dict]]:
        """``(text, words)`` of one generated sequence and its token times: a word starts at a
        token that begins with a space; it ends where the token after its last one starts."""
        special = set(self.tokenizer.all_special_ids)
        words: list[dict] = []
        new_word = True
        for i, token in enumerate(ids):
            if token in special:
                continue
            piece = self.tokenizer.decode([token])
            end = round(float(times[i + 1] if i + 1 < len(times) else times[i]), 2)
            new_word = new_word or piece[:1].isspace()
            if piece.strip():
                if new_word or not words:
                    words.append({"word": piece.strip(), "start": round(float(times[i]), 2), "end": end})
                else:
                    words[-1]["word"] += piece.strip()
                    words[-1]["end"] = end
                new_word = piece[-1:].isspace()
        text = self.tokenizer.decode([t for t in ids if t not in special]).strip()
        return text, words

    def peft_targets(self) -> dict[str, list[str]]:
        from automl_pt.train.adapters import find_targets

        return find_targets(self, QUERY_VALUE, KEY_VALUE)

    def export_as(self, fmt: str, directory: Any, head: Any, label_names: list[str]) -> bool:
        """``hf``: the ``WhisperForConditionalGeneration`` folder with tokenizer and feature
        extractor, which ``transformers.pipeline("automatic-speech-recognition")`` loads (it
        pads clips to Whisper's 30 s window). The decoder is the head: nothing ships apart."""
        if fmt != "hf":
            return super().export_as(fmt, directory, head, label_names)
        self.export(directory)
        return True

    def save_model(self, directory: Path) -> None:
        self.settings["window"] = self.window
        self.settings["seq2seq"] = True
        self._full.save_pretrained(str(directory), safe_serialization=True)
        self.tokenizer.save_pretrained(str(directory))
        try:
            from transformers import WhisperFeatureExtractor

            WhisperFeatureExtractor(feature_size=self.encoder.config.num_mel_bins).save_pretrained(str(directory))
        except Exception:  # pragma: no cover - optional for the pipeline only
            pass


# -- wav2vec2 family --------------------------------------------------------------------------
class WaveformBackbone(AudioBackbone):
    """wav2vec2 / HuBERT / WavLM / data2vec-audio on the raw waveform."""

    kind = "waveform"

    def __init__(self, model: nn.Module, name: str, normalize: bool = True, pooling: str = "mean",
                 settings: dict | None = None):
        super().__init__(name, model.config.hidden_size, pooling, settings)
        self.model = model
        self.normalize = normalize
        # group-norm feature encoders (wav2vec2-base) were trained without attention masks
        self.use_mask = getattr(model.config, "feat_extract_norm", "layer") == "layer"
        self.masks_padding = self.use_mask  # group norm over time sees the padding: no trimming
        self.max_seconds_limit = 30.0

    def hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        audio = as_float_audio(batch["audio"])
        length = batch["length"]
        mask = torch.arange(audio.shape[1], device=audio.device)[None, :] < length[:, None]
        if self.normalize:
            m = mask.float()
            n = m.sum(dim=1, keepdim=True).clamp(min=1.0)
            mean = (audio * m).sum(dim=1, keepdim=True) / n
            var = (((audio - mean) * m) ** 2).sum(dim=1, keepdim=True) / n
            audio = (audio - mean) / torch.sqrt(var + 1e-7) * m
        out = self.model(input_values=audio, attention_mask=mask.long() if self.use_mask else None)
        hidden = out.last_hidden_state
        valid = self.model._get_feat_extract_output_lengths(length).clamp(1, hidden.shape[1])
        return hidden, valid

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per encoder frame: the feature encoder's strides multiplied (320 for
        wav2vec2-style models at 16 kHz)."""
        return int(np.prod(self.model.config.conv_stride))

    def layer_stack(self) -> nn.ModuleList:
        model_type = self.model.config.model_type
        if model_type not in PARTIAL_WAVEFORM_TYPES:
            raise BackboneError(f"strategy 'partial' is not available for the audio backbone "
                                f"{self.name!r} ({model_type}): it splits "
                                f"{', '.join(PARTIAL_WAVEFORM_TYPES)} encoders; leave 'partial' out "
                                "of [search.space] strategy")
        return self.model.encoder.layers

    def top_inputs(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        lengths = self.model._get_feat_extract_output_lengths(batch["length"])
        out = {"valid": lengths.clamp(1, hidden.shape[1])}
        if self.use_mask:  # the frames the encoder attends to
            frames = torch.arange(hidden.shape[1], device=hidden.device)
            out["frame_mask"] = (frames[None, :] < lengths[:, None]).long()
        return out

    def run_top(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        encoder = self.model.encoder
        mask = None
        if self.use_mask:
            mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden,
                                             attention_mask=batch["frame_mask"].bool())
        hidden = _run_layers(encoder.layers[len(encoder.layers) - k:], hidden, mask)
        for module in self.final_modules():
            hidden = module(hidden)
        return hidden

    def final_modules(self) -> list[nn.Module]:
        """The final norm of "stable layer norm" encoders (the others normalise before the
        layers), then the adapter where the model has one."""
        encoder = self.model.encoder
        out = [encoder.layer_norm] if type(encoder).__name__.endswith("StableLayerNorm") else []
        adapter = getattr(self.model, "adapter", None)
        return out + ([adapter] if adapter is not None else [])

    def save_model(self, directory: Path) -> None:
        self.settings["normalize"] = self.normalize
        self.model.save_pretrained(str(directory), safe_serialization=True)

    def export_as(self, fmt: str, directory: Any, head: Any, label_names: list[str]) -> bool:
        """``hf`` with a CTC head (speech recognition): the encoder and the head as one
        transformers ``*ForCTC`` model, with a CTC tokenizer over the training characters and
        the feature extractor (a ``Wav2Vec2Processor``), which
        ``transformers.pipeline("automatic-speech-recognition")`` loads. Other heads: the
        encoder's folder, the head shipped apart."""
        if fmt != "hf" or not hasattr(head, "characters"):
            return super().export_as(fmt, directory, head, label_names)
        write_ctc_folder(self, head, Path(directory))
        return True


#: the CTC tokenizer's blank (transformers' CTC models use the pad token as blank) and word
#: delimiter (written for a space; another token if the transcripts use it)
CTC_BLANK = "<pad>"
CTC_DELIMITERS = ("|", "<space>")


def write_ctc_folder(backbone: WaveformBackbone, head: Any, directory: Path) -> None:
    """``backbone``'s encoder plus ``head`` (a linear layer over a blank and
    ``head.characters``) saved as ``AutoModelForCTC`` (``lm_head`` = the head's layer), with a
    ``Wav2Vec2CTCTokenizer`` (vocabulary: blank, then the characters, a space written as the
    word delimiter) and a ``Wav2Vec2FeatureExtractor`` that normalises clips as the backbone
    does."""
    import copy

    from transformers import (AutoModelForCTC, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Processor)

    quiet_transformers()
    directory.mkdir(parents=True, exist_ok=True)
    chars = list(head.characters)
    delimiter = next(d for d in CTC_DELIMITERS if d not in chars)
    vocab = {CTC_BLANK: 0}
    for i, c in enumerate(chars):
        vocab[delimiter if c == " " else c] = i + 1
    config = copy.deepcopy(backbone.model.config)
    config.vocab_size = len(vocab)
    config.pad_token_id = 0
    config.ctc_loss_reduction = "mean"
    config.ctc_zero_infinity = True
    config.architectures = None
    model = AutoModelForCTC.from_config(config)
    encoder_name = model.base_model_prefix   # wav2vec2 / hubert / wavlm ...
    getattr(model, encoder_name).load_state_dict(backbone.model.state_dict())
    model.lm_head.load_state_dict({k: v.detach().cpu() for k, v in head.linear.state_dict().items()})
    model.eval().save_pretrained(str(directory), safe_serialization=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), unk_token=CTC_BLANK,
                                     pad_token=CTC_BLANK, word_delimiter_token=delimiter,
                                     bos_token=None, eos_token=None, do_lower_case=False)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=backbone.sample_rate,
                                         padding_value=0.0, do_normalize=bool(backbone.normalize),
                                         return_attention_mask=bool(backbone.use_mask))
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(directory))


# -- Audio Spectrogram Transformer -------------------------------------------------------------
class ASTBackbone(AudioBackbone):
    """Audio Spectrogram Transformer; Kaldi-style filter banks from transformers' feature
    extractor (numpy, on the CPU), padded to the model's ``max_length`` frames."""

    takes_spectrogram = True
    kind = "ast"
    masks_padding = True  # each clip is cut to its length before the filter banks

    def __init__(self, model: nn.Module, extractor: Any, name: str, pooling: str = "mean",
                 settings: dict | None = None):
        super().__init__(name, model.config.hidden_size, pooling, settings)
        self.model = model
        self.extractor = extractor
        self.max_seconds_limit = model.config.max_length * 0.01

    def spectrogram(self, audio: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        audio = as_float_audio(audio).cpu().numpy()
        clips = [a[:int(n)] for a, n in zip(audio, length.cpu().tolist())]
        feats = self.extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        return feats["input_values"].to(length.device)

    def hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = batch.get("input_features")
        if features is None:
            features = self.spectrogram(batch["audio"], batch["length"])
        hidden = self.model(input_values=features).last_hidden_state
        valid = torch.full((hidden.shape[0],), hidden.shape[1], device=hidden.device)
        return hidden, valid

    @property
    def position_pooling(self) -> str | None:  # type: ignore[override]
        return None  # the mean also reads the class and distillation tokens, left out here

    def encode_positions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch tokens ``(B, F * T, D)`` (frequency-major, as the patch embedding
        flattens them; the class and distillation tokens left out); a patch is real when its
        first filter-bank frame lies inside the clip (25 ms windows every 10 ms, Kaldi's
        ``snip_edges``), so the patches of the zero padding up to ``max_length`` are masked."""
        features = batch.get("input_features")
        if features is None:
            features = self.spectrogram(batch["audio"], batch["length"])
        hidden = self.model(input_values=features).last_hidden_state
        freq, time = self.model.embeddings.get_shape(self.model.config)
        patches = hidden[:, hidden.shape[1] - freq * time:]
        window, shift = self.sample_rate * 25 // 1000, self.sample_rate * 10 // 1000
        frames = torch.div(batch["length"] - window, shift, rounding_mode="floor") + 1
        starts = torch.arange(time, device=hidden.device) * self.model.config.time_stride
        real = starts[None, :] < frames.clamp(min=1)[:, None]          # (B, T) patch columns
        mask = real[:, None, :].expand(-1, freq, -1).reshape(len(real), freq * time)
        return patches, mask

    def layer_stack(self) -> nn.ModuleList:
        return self.model.layers

    def run_top(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        layers = self.model.layers
        return self.model.layernorm(_run_layers(layers[len(layers) - k:], hidden, None))

    def final_modules(self) -> list[nn.Module]:
        return [self.model.layernorm]

    def save_model(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory), safe_serialization=True)
        self.extractor.save_pretrained(str(directory))


# -- loading ----------------------------------------------------------------------------------
def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # also "Writing model shards" in save_pretrained


def _folder_settings(source: str) -> dict[str, Any]:
    path = Path(source) / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_audio_backbone(source: str, name: str, options: dict,
                        backbone_options: dict[str, Any] | None = None) -> AudioBackbone:
    """Load an audio backbone from a hub id or a local folder.

    ``options`` are what the core passes to ``BackboneInfo.load`` (``params`` holds the trial's
    hyperparameters: ``pooling``); ``backbone_options`` come from the backbone name
    (``NAME?window=30``). An exported folder's saved settings (pooling, window, fitted maximum
    duration) are the defaults. ``params["init"] == "random"`` builds the same architecture with
    random weights. ``trust_remote_code`` stays off unless ``options['trust_remote_code'] is
    True``, which the core sets only from its caller (``automl_pt.load(...,
    trust_remote_code=True)``, ``automl-pt predict --trust-remote-code``), never from a study or
    model file. Raises :class:`BackboneError` (also for a model that needs custom code when it
    is off).
    """
    from transformers import AutoConfig

    from automl_pt.engine.pretrain import wants_random_init

    quiet_transformers()
    random_init = wants_random_init(options)
    trust = options.get("trust_remote_code") is True
    settings = _folder_settings(source) if Path(source).is_dir() else {}
    params = options.get("params") or {}
    pooling = str(params.get("pooling") or settings.get("pooling") or "mean")
    opts = dict(backbone_options or {})
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust)
    except OSError as exc:
        where = "local folder" if Path(source).exists() else "Hugging Face hub id"
        raise BackboneError(f"backbone {name!r}: cannot load {where} {source!r}: {exc}") from exc
    except ValueError as exc:
        if "custom code" not in str(exc):
            raise
        from automl_pt.export.provenance import TRUST_HINT

        raise BackboneError(f"backbone {name!r}: {source!r} needs custom code (transformers "
                            f"auto_map), which is off; {TRUST_HINT}") from exc
    model_type = config.model_type
    keep = {}
    if Path(source).is_dir() and load_saved_max_seconds(Path(source)) is not None:
        keep["max_seconds"] = load_saved_max_seconds(Path(source))  # fitted when it was exported
    try:
        if model_type == "whisper" and (options.get("transcribe") or settings.get("seq2seq")):
            window = opts.pop("window", settings.get("window"))
            model, tokenizer = _load_whisper_seq2seq(source, config, random_init)
            backbone = WhisperSeq2SeqBackbone(model, tokenizer, name, window=window, pooling=pooling,
                                              settings=keep)
        elif model_type == "whisper":
            window = opts.pop("window", settings.get("window"))
            backbone: AudioBackbone = WhisperEncoderBackbone(
                _load_whisper_encoder(source, config, random_init), name, window=window, pooling=pooling,
                settings=keep)
        elif model_type in WAVEFORM_TYPES:
            from transformers import AutoModel

            if random_init:
                model = AutoModel.from_config(config, dtype=torch.float32, trust_remote_code=trust)
            else:
                model = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=trust)
            backbone = WaveformBackbone(model, name, normalize=_wants_normalize(source, settings),
                                        pooling=pooling, settings=keep)
        elif model_type == "audio-spectrogram-transformer":
            from transformers import ASTFeatureExtractor, ASTModel

            model = (ASTModel(config) if random_init
                     else ASTModel.from_pretrained(source, dtype=torch.float32))
            try:
                extractor = ASTFeatureExtractor.from_pretrained(source)
            except OSError:
                extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins,
                                                max_length=config.max_length)
            backbone = ASTBackbone(model, extractor, name, pooling=pooling, settings=keep)
        else:
            raise BackboneError(f"backbone {name!r}: model type {model_type!r} is not an audio "
                                f"encoder this plugin supports ({', '.join(SUPPORTED_TYPES)})")
    except OSError as exc:
        raise BackboneError(f"backbone {name!r}: cannot load weights from {source!r}: {exc}") from exc
    if opts:
        raise BackboneError(f"backbone {name!r}: unknown option(s) {', '.join(sorted(opts))} for a "
                            f"{model_type} backbone")
    pool_file = Path(source) / POOLING_FILE
    if (backbone.pool.score is not None and pool_file.is_file() and settings.get("pooling") == pooling
            and not random_init):
        from safetensors.torch import load_file

        backbone.pool.load_state_dict(load_file(str(pool_file)))
    return backbone


def _load_whisper_encoder(source: str, config: Any, random_init: bool = False) -> nn.Module:
    from transformers import WhisperForAudioClassification
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if random_init:  # init = "random": the same encoder, randomly initialised
        return WhisperEncoder(config).float()
    if "WhisperEncoder" in (config.architectures or []):
        return WhisperEncoder.from_pretrained(source, dtype=torch.float32)
    return WhisperForAudioClassification.from_pretrained(source, dtype=torch.float32).encoder


def _load_whisper_seq2seq(source: str, config: Any, random_init: bool = False) -> tuple[nn.Module, Any]:
    """``WhisperForConditionalGeneration`` and its tokenizer (the folder's ``tokenizer.json``)."""
    from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast

    if random_init:
        model = WhisperForConditionalGeneration(config).float()
    else:
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    try:
        tokenizer = WhisperTokenizerFast.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise BackboneError(f"{source}: speech recognition needs the Whisper tokenizer "
                            f"(tokenizer.json) next to the model: {exc}") from exc
    return model, tokenizer


def _wants_normalize(source: str, settings: dict) -> bool:
    if "normalize" in settings:
        return bool(settings["normalize"])
    try:
        from transformers import AutoFeatureExtractor

        return bool(getattr(AutoFeatureExtractor.from_pretrained(source), "do_normalize", True))
    except Exception:  # no preprocessor_config.json: wav2vec2-style checkpoints normalise
        return True


def parse_backbone_name(name: str) -> tuple[str, dict[str, Any]]:
    """``"whisper-tiny-en?window=30"`` -> ``("whisper-tiny-en", {"window": 30.0})``.
    ``window=auto`` means a window sized to the clip (``None``)."""
    if "?" not in name:
        return name, {}
    base, _, query = name.partition("?")
    options: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep:
            raise BackboneError(f"backbone {name!r}: option {part!r} must look like key=value")
        if key == "window":
            if value in ("auto", "clip"):
                options[key] = None
                continue
            try:
                options[key] = float(value.removesuffix("s"))
            except ValueError:
                raise BackboneError(f"backbone {name!r}: window must be 'auto' or seconds, "
                                    f"got {value!r}") from None
        else:
            raise BackboneError(f"backbone {name!r}: unknown option {key!r} (known: window)")
    return base, options
