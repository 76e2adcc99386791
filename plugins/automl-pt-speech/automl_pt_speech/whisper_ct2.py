"""Convert a CTranslate2 Whisper model (``model.bin`` + ``tokenizer.json``) into a transformers
``WhisperForConditionalGeneration`` folder, once, cached on disk.

CTranslate2 fuses attention projections: the self-attention ``linear_0`` holds Q, K and V stacked
(``3 * d_model`` rows), the cross-attention ``linear_1`` holds K and V; Whisper's K projections have
no bias, so CTranslate2 stores zeros there. The converter splits them back (and checks that the K
biases are zero, since transformers' Whisper has none).

The cache lives under ``$AUTOML_PT_CACHE`` (default ``~/.cache/automl_pt``) in a folder named after
a hash of the source files; it is written into a temporary folder and renamed into place, so a
crash never leaves a half-written model and concurrent workers do not clash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .ct2 import CT2FormatError, CT2Model, dequantize, read_ct2_model

CONVERTER_VERSION = 1
MARKER = "automl_pt_conversion.json"


def cache_root() -> Path:
    """``$AUTOML_PT_CACHE`` or ``~/.cache/automl_pt``."""
    return Path(os.environ.get("AUTOML_PT_CACHE") or Path.home() / ".cache" / "automl_pt").expanduser()


def _fingerprint(ct2_dir: Path) -> str:
    h = hashlib.sha256(f"converter-{CONVERTER_VERSION}".encode())
    for name in ("model.bin", "tokenizer.json", "config.json"):
        path = ct2_dir / name
        if path.is_file():
            h.update(name.encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    tokens = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens", [])
    return {t["content"]: int(t["id"]) for t in tokens}


def whisper_config(model: CT2Model, special: dict[str, int], extra: dict[str, Any]):
    """A transformers ``WhisperConfig`` whose sizes are read off the CTranslate2 variables."""
    from transformers import WhisperConfig

    v = model.variables
    d_model, n_mels, _ = v["encoder/conv1/weight"].shape
    vocab = int(v["decoder/embeddings/weight"].shape[0])

    def token(text: str, default: int) -> int:  # no tokenizer and a tiny vocabulary: the last id
        return min(special.get(text, default), vocab - 1)

    eot = token("<|endoftext|>", 50256)
    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=int(n_mels), d_model=int(d_model),
        encoder_layers=model.layer_count("encoder"), decoder_layers=model.layer_count("decoder"),
        encoder_attention_heads=int(model.scalar("encoder/num_heads")),
        decoder_attention_heads=int(model.scalar("decoder/num_heads")),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=token("<|startoftranscript|>", 50257),
        suppress_tokens=list(extra.get("suppress_ids") or []),
        begin_suppress_tokens=list(extra.get("suppress_ids_begin") or []),
        tie_word_embeddings=True, architectures=["WhisperForConditionalGeneration"],
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def _split_rows(array: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise CT2FormatError(f"fused variable {name!r} has {array.shape[0]} rows, not divisible "
                             f"by {parts}")
    return np.split(array, parts, axis=0)


def whisper_state_dict(model: CT2Model) -> dict[str, np.ndarray]:
    """transformers ``WhisperForConditionalGeneration`` weights (float32) from CTranslate2
    variables, with the fused Q/K/V projections split."""
    if model.spec != "WhisperSpec":
        raise CT2FormatError(f"expected a WhisperSpec model, found {model.spec!r}")
    f = lambda name: dequantize(model, name)  # noqa: E731
    out: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = f(f"{src}/weight")
        if f"{src}/bias" in model.variables:
            out[f"{dst}.bias"] = f(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = f(f"{src}/gamma")
        out[f"{dst}.bias"] = f(f"{src}/beta")

    def split(dst_prefix: str, src: str, names: tuple[str, ...]) -> None:
        weights = _split_rows(f(f"{src}/weight"), len(names), f"{src}/weight")
        biases = _split_rows(f(f"{src}/bias"), len(names), f"{src}/bias") \
            if f"{src}/bias" in model.variables else [None] * len(names)
        for proj, w, b in zip(names, weights, biases):
            out[f"{dst_prefix}.{proj}.weight"] = w
            if b is None:
                continue
            if proj == "k_proj":  # Whisper's key projection has no bias: CT2 stores zeros
                if np.abs(b).max() > 1e-6:
                    raise CT2FormatError(f"{src}/bias: the key bias is not zero; transformers' "
                                         "Whisper cannot represent it")
                continue
            out[f"{dst_prefix}.{proj}.bias"] = b

    def layer(dst: str, src: str, cross: bool) -> None:
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
            linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    out["model.encoder.embed_positions.weight"] = f("encoder/position_encodings/encodings")
    for i in range(model.layer_count("encoder")):
        layer(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    out["model.decoder.embed_tokens.weight"] = f("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = f("decoder/position_encodings/encodings")
    for i in range(model.layer_count("decoder")):
        layer(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    projection = model.variables.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(projection, model.variables["decoder/embeddings/weight"]):
        out["proj_out.weight"] = f("decoder/projection/weight")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def convert_ct2_whisper(ct2_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a transformers Whisper folder (config, generation config, safetensors weights,
    feature-extractor and tokenizer files) for the CTranslate2 model in ``ct2_dir``."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, WhisperFeatureExtractor

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    model = read_ct2_model(ct2_dir / "model.bin")
    extra = json.loads((ct2_dir / "config.json").read_text()) if (ct2_dir / "config.json").is_file() else {}
    tokenizer = ct2_dir / "tokenizer.json"
    special = _special_ids(tokenizer) if tokenizer.is_file() else {}
    config = whisper_config(model, special, extra)
    state = whisper_state_dict(model)
    if "proj_out.weight" in state:
        config.tie_word_embeddings = False
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file({k: torch.from_numpy(v) for k, v in state.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    no_ts = special.get("<|notimestamps|>")
    gen = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id,
        max_length=config.max_target_positions, suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens, no_timestamps_token_id=no_ts,
        forced_decoder_ids=[[1, no_ts]] if no_ts is not None else None,
        alignment_heads=extra.get("alignment_heads"),
        is_multilingual=bool(extra.get("lang_ids")) and config.vocab_size >= 51865)
    gen.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    if tokenizer.is_file():
        shutil.copy(tokenizer, out_dir / "tokenizer.json")
        (out_dir / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "WhisperTokenizer", "model_max_length": config.max_target_positions,
            "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, indent=2))
    return out_dir


def converted_whisper_dir(ct2_dir: str | Path, name: str) -> Path:
    """The converted folder for ``ct2_dir``, converting on first use (atomically: a temporary
    folder next to the cache entry, renamed into place; a concurrent winner is kept)."""
    ct2_dir = Path(ct2_dir)
    target = cache_root() / "whisper" / f"{name}-{_fingerprint(ct2_dir)}"
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        convert_ct2_whisper(ct2_dir, tmp)
        (tmp / MARKER).write_text(json.dumps({"source": str(ct2_dir), "converter": CONVERTER_VERSION}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():  # neither ours nor a finished concurrent one
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def greedy_transcribe(model: Any, tokenizer: Any, input_features: Any, max_tokens: int = 64) -> str:
    """Greedy decoding for an English-only Whisper (prompt ``<|startoftranscript|>
    <|notimestamps|>``), with the model's suppressed tokens masked. ``tokenizer`` is a
    ``tokenizers.Tokenizer``; ``input_features`` a ``(1, n_mels, frames)`` tensor."""
    import torch

    cfg = model.config
    sot = tokenizer.token_to_id("<|startoftranscript|>")
    no_ts = tokenizer.token_to_id("<|notimestamps|>")
    eot = tokenizer.token_to_id("<|endoftext|>")
    tokens = [sot, no_ts]
    suppress = torch.tensor(sorted(set(cfg.suppress_tokens or [])), dtype=torch.long)
    begin = torch.tensor(sorted(set(cfg.begin_suppress_tokens or [])), dtype=torch.long)
    with torch.no_grad():
        encoded = model.model.encoder(input_features).last_hidden_state
        for step in range(max_tokens):
            hidden = model.model.decoder(input_ids=torch.tensor([tokens]),
                                         encoder_hidden_states=encoded).last_hidden_state
            logits = model.proj_out(hidden[0, -1]).float()
            logits[suppress] = -float("inf")
            logits[eot + 1:] = -float("inf")  # special and timestamp tokens
            if step == 0:
                logits[begin] = -float("inf")
            token = int(logits.argmax())
            if token == eot:
                break
            tokens.append(token)
    return tokenizer.decode([t for t in tokens[2:] if t < eot])
