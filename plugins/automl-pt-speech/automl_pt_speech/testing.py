"""Helpers for tests and benchmarks: tiny random audio encoders and a synthetic tone dataset
(no network, no espeak-ng)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .backbones import quiet_transformers

TONE_CLASSES = {"low": 300.0, "mid": 900.0, "high": 2400.0}
RATES = (8000, 16000, 22050, 44100)


def make_tiny_wav2vec2(path: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer, 32-d wav2vec2 saved as a transformers folder."""
    quiet_transformers()
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
        do_stable_layer_norm=True, mask_time_prob=0.0, layerdrop=0.0, hidden_dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0)
    Wav2Vec2Model(config).save_pretrained(str(path))
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(str(path))
    return path


def make_tiny_whisper(path: Path, seed: int = 0, encoder_only: bool = False) -> Path:
    """A randomly initialised 2-layer, 32-d Whisper (full seq2seq model unless ``encoder_only``)."""
    quiet_transformers()
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=32,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
        suppress_tokens=[], begin_suppress_tokens=[])
    model = WhisperEncoder(config) if encoder_only else WhisperForConditionalGeneration(config)
    model.save_pretrained(str(path))
    return path


def make_tiny_ast(path: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer, 32-d Audio Spectrogram Transformer on 1-second inputs."""
    quiet_transformers()
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_mel_bins=32, max_length=100, patch_size=16,
                       frequency_stride=10, time_stride=10)
    ASTModel(config).save_pretrained(str(path))
    ASTFeatureExtractor(num_mel_bins=32, max_length=100).save_pretrained(str(path))
    return path


def tone(label: str, rng: np.random.Generator, rate: int) -> np.ndarray:
    """A tone of the class's pitch (±8 %, with a harmonic) of 0.3-0.9 s, with noise."""
    seconds = rng.uniform(0.3, 0.9)
    t = np.arange(int(seconds * rate)) / rate
    f = TONE_CLASSES[label] * rng.uniform(0.92, 1.08)
    wave = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t + rng.uniform(0, 6))
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.03)
    wave = wave * envelope * rng.uniform(0.2, 0.8) + rng.normal(0, 0.02, len(t))
    lead = np.zeros(int(rng.uniform(0, 0.15) * rate))
    return np.concatenate([lead, wave]).astype(np.float32)


def make_tone_tree(root: Path, n_per_class: int, seed: int,
                   formats: tuple[str, ...] = ("wav", "flac", "ogg")) -> Path:
    """``root/<class>/<n>.<ext>`` clips at mixed sample rates and formats, some stereo."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for label in TONE_CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rate = int(RATES[rng.integers(len(RATES))])
            fmt = formats[i % len(formats)]
            audio = tone(label, rng, rate)
            if i % 5 == 0:
                audio = np.stack([audio, audio * 0.5], axis=1)
            kw = {"wav": {"subtype": "PCM_16"}, "flac": {}, "ogg": {"subtype": "VORBIS"}}[fmt]
            sf.write(str(root / label / f"{label}-{i:03d}.{fmt}"), audio, rate, **kw)
    return root


def write_table(path: Path, tree: Path, audio_column: str = "audio",
                label_column: str = "label") -> Path:
    """A CSV listing the clips of ``tree`` with paths relative to the CSV's folder."""
    rows = [(f.relative_to(path.parent).as_posix(), f.parent.name)
            for f in sorted(tree.rglob("*")) if f.is_file()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow((audio_column, label_column))
        writer.writerows(rows)
    return path


def make_tiny_whisper_asr(path: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer, 32-d Whisper seq2seq model with a byte-level tokenizer
    (every byte a token, no merges; ``<|endoftext|>``, ``<|startoftranscript|>``,
    ``<|notimestamps|>`` after them), saved as a folder speech recognition can load."""
    quiet_transformers()
    import json

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    special = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special)
    tok.save(str(path / "tokenizer.json"))
    eot, sot, nots = (tok.token_to_id(s) for s in special)
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "model_max_length": 64, "bos_token": special[0],
        "eos_token": special[0], "unk_token": special[0], "pad_token": special[0]}))
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(vocab) + len(special), num_mel_bins=80, d_model=32, encoder_layers=2,
        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=[], begin_suppress_tokens=[])
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        forced_decoder_ids=[[1, nots]], no_timestamps_token_id=nots, max_length=64,
        # as Whisper's: a few tokens never generated, and no space or end first
        suppress_tokens=[tok.token_to_id("q"), tok.token_to_id("z")],
        begin_suppress_tokens=[tok.token_to_id("\u0120"), eot],
        alignment_heads=[[0, 0], [0, 1]])   # cross-attention heads word timestamps read
    model.save_pretrained(str(path))
    return path


def make_tiny_wav2vec2_ctc(path: Path, seed: int = 0, model_type: str = "wav2vec2") -> Path:
    """A randomly initialised 2-layer, 32-d encoder of ``model_type`` (``wav2vec2``,
    ``hubert``, ``wavlm``) for CTC tests."""
    quiet_transformers()
    import torch
    from transformers import (AutoModel, HubertConfig, Wav2Vec2Config, Wav2Vec2FeatureExtractor,
                              WavLMConfig)

    cls = {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "wavlm": WavLMConfig}[model_type]
    torch.manual_seed(seed)
    extra = {"num_buckets": 16, "max_bucket_distance": 64} if model_type == "wavlm" else {}
    config = cls(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
        do_stable_layer_norm=True, mask_time_prob=0.0, layerdrop=0.0, hidden_dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, **extra)
    AutoModel.from_config(config).save_pretrained(str(path))
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(str(path))
    return path
