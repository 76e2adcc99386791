"""The CTranslate2 model.bin reader and the Whisper converter (fused Q/K/V split)."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
import torch

from automl_pt_speech.ct2 import CT2FormatError, dequantize, read_ct2_model, write_ct2_model
from automl_pt_speech.whisper_ct2 import (
    convert_ct2_whisper,
    converted_whisper_dir,
    greedy_transcribe,
    whisper_state_dict,
)


def test_reader_round_trips_every_dtype_and_alias(tmp_path):
    rng = np.random.default_rng(0)
    variables = {
        "a/weight": rng.standard_normal((3, 4)).astype(np.float32),
        "a/half": rng.standard_normal((5,)).astype(np.float16),
        "b/num_heads": np.array(6, dtype=np.int16),
        "b/flag": np.array(1, dtype=np.int8),
        "b/ids": np.arange(7, dtype=np.int32),
    }
    write_ct2_model(tmp_path / "model.bin", "TestSpec", 2, variables, {"c/tied": "a/weight"})
    model = read_ct2_model(tmp_path)  # a folder works too
    assert (model.spec, model.revision, model.binary_version) == ("TestSpec", 2, 6)
    for name, value in variables.items():
        assert model.variables[name].dtype == value.dtype
        np.testing.assert_array_equal(model.variables[name], value)
    assert model.aliases == {"c/tied": "a/weight"}
    np.testing.assert_array_equal(model.variables["c/tied"], variables["a/weight"])
    assert model.scalar("b/num_heads") == 6


def test_reader_decodes_bfloat16_and_dequantizes_int8(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 32768.0], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    weight = np.array([[0.5, -1.0], [2.0, 4.0]], dtype=np.float32)
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    q = np.rint(weight * scale[:, None]).astype(np.int8)
    write_ct2_model(tmp_path / "model.bin", "TestSpec", 1,
                    {"w": q, "w_scale": scale, "placeholder": np.zeros(4, np.int16)})
    raw = bytearray((tmp_path / "model.bin").read_bytes())
    # patch the int16 placeholder into a bfloat16 variable (dtype id 5) holding `values`
    start = raw.index(b"placeholder\0") + len(b"placeholder\0") + 1 + 4
    raw[start] = 5
    raw[start + 5:start + 5 + 8] = bf16.tobytes()
    (tmp_path / "model.bin").write_bytes(bytes(raw))
    model = read_ct2_model(tmp_path / "model.bin")
    np.testing.assert_array_equal(model.variables["placeholder"], values)  # exact in bf16
    np.testing.assert_allclose(dequantize(model, "w"), weight, atol=0.02)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-3], "truncated|trailing"),
    (lambda b: struct.pack("<I", 5) + b[4:], "binary version 5 is not supported"),
    (lambda b: b + b"\0\0", "trailing bytes"),
])
def test_reader_rejects_damaged_files(tmp_path, damage, message):
    write_ct2_model(tmp_path / "model.bin", "TestSpec", 1, {"x": np.ones((2, 2), np.float32)})
    (tmp_path / "model.bin").write_bytes(damage((tmp_path / "model.bin").read_bytes()))
    with pytest.raises(CT2FormatError, match=message):
        read_ct2_model(tmp_path / "model.bin")


def fuse_like_ctranslate2(state: dict[str, torch.Tensor], enc_layers: int, dec_layers: int,
                          heads: int) -> dict[str, np.ndarray]:
    """transformers Whisper weights -> CTranslate2 WhisperSpec variables, the way
    ctranslate2's converter lays them out (fused Q/K/V, zero K bias, fp16)."""
    s = {k: v.detach().numpy() for k, v in state.items()}
    out: dict[str, np.ndarray] = {}

    def lin(dst, src, bias=True):
        out[f"{dst}/weight"] = s[f"{src}.weight"]
        if bias and f"{src}.bias" in s:
            out[f"{dst}/bias"] = s[f"{src}.bias"]

    def ln(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = s[f"{src}.weight"], s[f"{src}.bias"]

    def fused(dst, src, projs):
        out[f"{dst}/weight"] = np.concatenate([s[f"{src}.{p}.weight"] for p in projs])
        out[f"{dst}/bias"] = np.concatenate([
            s.get(f"{src}.{p}.bias", np.zeros(s[f"{src}.{p}.weight"].shape[0], np.float32))
            for p in projs])

    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    out["encoder/num_heads"] = np.array(heads, np.int16)
    out["encoder/position_encodings/encodings"] = s["model.encoder.embed_positions.weight"]
    for i in range(enc_layers):
        src, dst = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        fused(f"{dst}/self_attention/linear_0", f"{src}.self_attn", ("q_proj", "k_proj", "v_proj"))
        lin(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
        ln(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
        lin(f"{dst}/ffn/linear_0", f"{src}.fc1")
        lin(f"{dst}/ffn/linear_1", f"{src}.fc2")
        ln(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    out["decoder/num_heads"] = np.array(heads, np.int16)
    out["decoder/embeddings/weight"] = s["model.decoder.embed_tokens.weight"]
    out["decoder/position_encodings/encodings"] = s["model.decoder.embed_positions.weight"]
    for i in range(dec_layers):
        src, dst = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        fused(f"{dst}/self_attention/linear_0", f"{src}.self_attn", ("q_proj", "k_proj", "v_proj"))
        lin(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
        ln(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
        lin(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
        fused(f"{dst}/attention/linear_1", f"{src}.encoder_attn", ("k_proj", "v_proj"))
        lin(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
        ln(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
        lin(f"{dst}/ffn/linear_0", f"{src}.fc1")
        lin(f"{dst}/ffn/linear_1", f"{src}.fc2")
        ln(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    return {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny_whisper_ct2(tmp_path_factory):
    """A random tiny Whisper and its CTranslate2 model.bin (fp16, fused, tied projection)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=100, num_mel_bins=80, d_model=32, encoder_layers=2,
                           decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                           encoder_ffn_dim=48, decoder_ffn_dim=48, max_source_positions=60,
                           max_target_positions=16, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=3)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.bias", "v_proj.bias", "out_proj.bias")):
                p.normal_(0, 0.5)  # biases are zero at init: make the split observable
        for p in model.parameters():  # fp16 storage: compare with the fp16-rounded original
            p.copy_(p.half().float())
    variables = fuse_like_ctranslate2(model.state_dict(), 2, 2, 4)
    folder = tmp_path_factory.mktemp("ct2")
    write_ct2_model(folder / "model.bin", "WhisperSpec", 3, variables,
                    {"decoder/projection/weight": "decoder/embeddings/weight"})
    (folder / "config.json").write_text(json.dumps({"suppress_ids": [5], "suppress_ids_begin": [2]}))
    return model, folder


def test_conversion_splits_fused_qkv_and_reproduces_the_model(tiny_whisper_ct2, tmp_path):
    from transformers import WhisperForConditionalGeneration

    original, folder = tiny_whisper_ct2
    out = convert_ct2_whisper(folder, tmp_path / "hf")
    converted = WhisperForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    want, got = original.state_dict(), converted.state_dict()
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
    assert converted.config.suppress_tokens == [5]
    features = torch.randn(1, 80, 120)
    ids = torch.tensor([[1, 7, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(converted(input_features=features, decoder_input_ids=ids).logits,
                                   original(input_features=features, decoder_input_ids=ids).logits)


def test_conversion_rejects_a_nonzero_key_bias(tiny_whisper_ct2):
    _, folder = tiny_whisper_ct2
    model = read_ct2_model(folder)
    bias = model.variables["encoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[32:64] = 1.0  # the K third
    model.variables["encoder/layer_0/self_attention/linear_0/bias"] = bias
    with pytest.raises(CT2FormatError, match="key bias is not zero"):
        whisper_state_dict(model)


def test_shipped_model_bin_is_read_and_converted_once(whisper_ct2, tmp_path, monkeypatch):
    from automl_pt_speech import whisper_ct2 as module

    model = read_ct2_model(whisper_ct2 / "model.bin")
    assert model.spec == "WhisperSpec" and model.layer_count("encoder") == 4
    assert model.variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (1152, 384)
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    monkeypatch.setenv("AUTOML_PT_CACHE", str(tmp_path / "cache"))
    first = converted_whisper_dir(whisper_ct2, "whisper-tiny-en")
    config = json.loads((first / "config.json").read_text())
    assert (config["d_model"], config["encoder_layers"], config["vocab_size"]) == (384, 4, 51864)
    assert first.parent.parent == tmp_path / "cache"
    calls = []
    monkeypatch.setattr(module, "convert_ct2_whisper", lambda *a: calls.append(a))
    assert converted_whisper_dir(whisper_ct2, "whisper-tiny-en") == first
    assert calls == []                                   # cached: not converted again
    assert [p.name for p in first.parent.iterdir()] == [first.name]   # no temp folders left


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = re.findall(r"[a-z']+", reference.lower())
    hyp = re.findall(r"[a-z']+", hypothesis.lower())
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[len(hyp)]) / max(1, len(ref))


def test_word_error_rate():
    assert word_error_rate("the cat sat", "the cat sat") == 0
    assert word_error_rate("the cat sat", "the dog sat down") == pytest.approx(2 / 3)


@pytest.mark.slow
def test_converted_whisper_transcribes_espeak_speech(whisper_ct2, espeak, tmp_path):
    """The real proof of the conversion: the converted tiny.en understands a spoken sentence,
    and the same weights with Q and K swapped back (a wrong split) do not."""
    import subprocess

    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration

    from automl_pt_speech.audio import read_audio
    from automl_pt_speech.backbones import WhisperEncoderBackbone

    sentence = "My name is John and I live in a small house with a big garden."
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(tmp_path / "s.wav"), sentence],
                   check=True)
    folder = converted_whisper_dir(whisper_ct2, "whisper-tiny-en")
    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    audio = torch.from_numpy(read_audio(tmp_path / "s.wav", 16000))[None]
    frontend = WhisperEncoderBackbone(model.model.encoder, "w", window=30.0)
    features = frontend.spectrogram(audio, torch.tensor([audio.shape[1]]))
    text = greedy_transcribe(model, tokenizer, features)
    wer = word_error_rate(sentence, text)
    print(f"transcript: {text!r} (WER {wer:.2f})")
    assert wer <= 0.2
    with torch.no_grad():
        for layer in model.model.encoder.layers:
            q, k = layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight
            q_copy = q.clone()
            q.copy_(k)
            k.copy_(q_copy)
    assert word_error_rate(sentence, greedy_transcribe(model, tokenizer, features)) > 0.5
