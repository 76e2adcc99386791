"""Export formats on tiny models of every modality: onnxruntime and TorchScript reproduce
PyTorch's logits, the hf folder loads with transformers, the timm folder is the whole classifier,
and every model card's "how to load" snippet runs as written and gives the model's answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import automl_pt
from automl_pt.cli import main
from automl_pt.errors import ModelLoadError
from automl_pt.export.formats import EXPORT_CONFIG, ExportFormatError, export_model
from tests.support.exported import audio_best, cached, image_best, text_best

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

TEXTS = ["rocket orbit the moon tonight", "bread and cheese soup", "the judge and the jury",
         "a", "comet telescope galaxy launch star planet astronaut and the crew"]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp() / "exported-models"
    return {"text": cached(base, "text", text_best), "image": cached(base, "image", image_best),
            "audio": cached(base, "audio", audio_best),
            "whisper": cached(base, "whisper", lambda root: audio_best(root, "whisper"))}


def raw_inputs(kind: str, best: Path) -> list:
    """Five real inputs of the model's modality (from its study's test data)."""
    if kind == "text":
        return TEXTS
    folder = best.parent.parent / "data" / ("test_images" if kind == "image" else "test_clips")
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    return files[:5]


def card_snippet(folder: Path) -> str:
    card = (folder / "README.md").read_text()
    start = card.index("## How to load")
    return card[card.index("```python\n", start) + 10:card.index("```\n", card.index("```python\n", start) + 10)]


def run_snippet(folder: Path, cwd: Path, monkeypatch) -> dict:
    monkeypatch.chdir(cwd)
    namespace: dict = {}
    exec(compile(card_snippet(folder), str(folder / "README.md"), "exec"), namespace)
    return namespace


def write_examples(cwd: Path, best: Path, kind: str) -> None:
    """The files the card snippets name (photo.png, clip.wav), copied from the test data."""
    if kind == "image":
        from PIL import Image

        Image.open(raw_inputs("image", best)[0]).convert("RGB").resize((32, 32)).save(cwd / "photo.png")
    elif kind in ("audio", "whisper"):
        import soundfile as sf

        wave, rate = sf.read(raw_inputs("audio", best)[0], dtype="float32")
        from automl_pt_speech.audio import resample

        mono = wave.mean(axis=1) if wave.ndim == 2 else wave
        sf.write(str(cwd / "clip.wav"), resample(mono, rate, 16000), 16000, subtype="FLOAT")


def example_inputs(kind: str, cwd: Path) -> list:
    return {"text": ["an example text", "another one"], "image": [str(cwd / "photo.png")],
            "audio": [str(cwd / "clip.wav")], "whisper": [str(cwd / "clip.wav")]}[kind]


@pytest.mark.parametrize("kind", ["text", "image", "audio", "whisper"])
def test_onnx_matches_pytorch_and_its_card_runs(models, kind, tmp_path, monkeypatch):
    import onnxruntime as ort

    best = models[kind]
    predictor = automl_pt.load(best)
    out = export_model(best, "onnx", tmp_path / "onnx", predictor=predictor)
    config = json.loads((out / EXPORT_CONFIG).read_text())
    assert config["labels"] == predictor.label_names
    assert config["checked_with_onnxruntime"] and config["max_abs_difference"] <= 1e-4
    assert all(spec["shape"][0] == "batch" for spec in config["inputs"])

    # A real batch of another size than the export's samples, and a batch of one.
    import torch

    items = raw_inputs("audio" if kind == "whisper" else kind, best)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i["name"] for i in config["inputs"]]
    for chunk in (items, items[:1]):
        enc = predictor.preprocessor.collate(predictor.preprocessor.encode(chunk))
        with torch.no_grad():
            want = predictor.model({k: v for k, v in enc.items()}).numpy()
        got = session.run(["logits"], {n: enc[n].numpy() for n in names})[0]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)

    write_examples(tmp_path, best, kind)
    ns = run_snippet(out, tmp_path, monkeypatch)
    expected = predictor.predict(example_inputs(kind, tmp_path)).probabilities
    np.testing.assert_allclose(ns["probabilities"], expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_torchscript_reproduces_pytorch_and_its_card_runs(models, kind, tmp_path, monkeypatch):
    best = models[kind]
    predictor = automl_pt.load(best)
    out = export_model(best, "torchscript", tmp_path / "ts", predictor=predictor)
    assert json.loads((out / EXPORT_CONFIG).read_text())["max_abs_difference"] <= 1e-4
    write_examples(tmp_path, best, kind)
    ns = run_snippet(out, tmp_path, monkeypatch)
    np.testing.assert_allclose(ns["probabilities"],
                               predictor.predict(example_inputs(kind, tmp_path)).probabilities,
                               atol=1e-4)


def test_hf_folder_loads_with_transformers_and_the_card_applies_the_head(models, tmp_path,
                                                                         monkeypatch):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    best = models["text"]
    predictor = automl_pt.load(best)
    out = export_model(best, "hf", tmp_path / "hf", predictor=predictor)
    config = AutoConfig.from_pretrained(out)
    assert [config.id2label[i] for i in range(len(predictor.label_names))] == predictor.label_names
    AutoModel.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    card = (out / "README.md").read_text()
    assert "not a transformers head" in card
    ns = run_snippet(out, tmp_path, monkeypatch)
    expected = predictor.predict(["an example text", "another one"])
    np.testing.assert_allclose(ns["probabilities"].numpy(), expected.probabilities, atol=1e-5)
    assert ns["labels"] == expected.labels


def test_hf_audio_folder_and_its_card_reproduce_the_model(models, tmp_path, monkeypatch):
    from transformers import AutoConfig

    predictor = automl_pt.load(models["audio"])
    out = export_model(models["audio"], "hf", tmp_path / "hf", predictor=predictor)
    config = AutoConfig.from_pretrained(out)
    assert list(config.id2label.values()) == predictor.label_names
    assert (out / "head.safetensors").is_file()
    write_examples(tmp_path, models["audio"], "audio")
    ns = run_snippet(out, tmp_path, monkeypatch)       # wav2vec2 + pooling + head, by hand
    assert type(ns["encoder"]).__name__ == "Wav2Vec2Model"
    np.testing.assert_allclose(ns["probabilities"].numpy(),
                               predictor.predict([str(tmp_path / "clip.wav")]).probabilities, atol=1e-4)


def test_hf_whisper_folder_loads_as_a_whisper_encoder(models, tmp_path, monkeypatch):
    out = export_model(models["whisper"], "hf", tmp_path / "hf")
    ns = run_snippet(out, tmp_path, monkeypatch)
    assert type(ns["encoder"]).__name__ == "WhisperEncoder"
    assert list(ns["config"].id2label.values()) == automl_pt.load(models["whisper"]).label_names


@pytest.mark.parametrize("fmt", ["timm", "safetensors"])
def test_timm_folder_is_the_whole_classifier(models, fmt, tmp_path, monkeypatch):
    import timm
    import torch

    best = models["image"]
    predictor = automl_pt.load(best)
    out = export_model(best, fmt, tmp_path / fmt, predictor=predictor)
    config = json.loads((out / EXPORT_CONFIG).read_text())
    assert config["written_as"] == "timm" and config["head_folded"] is True
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == predictor.label_names
    assert tuple(model.pretrained_cfg["input_size"]) == (3, 32, 32)
    # the timm model's logits are the fine-tuned model's logits
    enc = predictor.preprocessor.encode(raw_inputs("image", best))
    with torch.no_grad():
        want = predictor.model(dict(enc))
        x = predictor.model.backbone.normalize(enc["pixel_values"])
        np.testing.assert_allclose(model(x).numpy(), want.numpy(), atol=1e-5)
    write_examples(tmp_path, best, "image")
    ns = run_snippet(out, tmp_path, monkeypatch)
    np.testing.assert_allclose(ns["probabilities"].numpy(),
                               predictor.predict([str(tmp_path / "photo.png")]).probabilities, atol=1e-4)


def test_folders_carry_preprocessing_labels_and_a_model_card(models, tmp_path):
    text = export_model(models["text"], "hf", tmp_path / "text")
    assert (text / "tokenizer.json").is_file()
    prep = json.loads((text / EXPORT_CONFIG).read_text())["preprocessing"]
    # fitted to the training texts (7 words each), capped by the study's [data] max_length = 32
    assert 5 <= prep["max_length"] < 32 and prep["limit"] == 32
    image = json.loads((export_model(models["image"], "timm", tmp_path / "image") / EXPORT_CONFIG)
                       .read_text())["preprocessing"]["data_config"]
    assert image["input_size"] == [3, 32, 32] and len(image["mean"]) == 3 and len(image["std"]) == 3
    assert image["interpolation"] and image["crop_pct"] == 1.0
    audio = json.loads((export_model(models["audio"], "torchscript", tmp_path / "audio")
                        / EXPORT_CONFIG).read_text())["preprocessing"]
    assert audio["sample_rate"] == 16000 and audio["max_samples"] > 0

    card = (text / "README.md").read_text()
    manifest = json.loads((models["text"] / "automl_pt.json").read_text())
    metrics = json.loads((models["text"] / "metrics.json").read_text())
    for needle in ("# tiny-text-classification", "## Scores", "## Data", "train.csv", "## Search",
                   "| learning_rate |", "## Best parameters", "## How to load",
                   f"| test | accuracy | {metrics['test']['accuracy']:.4f} |",
                   f"| batch_size | {manifest['params']['batch_size']} |"):
        assert needle in card, needle


def test_native_copy_loads_and_predicts_the_same(models, tmp_path, monkeypatch):
    out = export_model(models["text"], "native", tmp_path / "native")
    ns = run_snippet(out, tmp_path, monkeypatch)
    assert ns["prediction"].labels == automl_pt.load(models["text"]).predict(
        ["an example text", "another one"]).labels


def test_unsupported_formats_fail_clearly_and_write_nothing(models, tmp_path):
    with pytest.raises(ModelLoadError, match=r"'timm' is not available for the text backbone .*"
                       r"TransformersTextBackbone.*library formats: hf"):
        export_model(models["text"], "timm", tmp_path / "timm")
    with pytest.raises(ModelLoadError, match=r"'hf' is not available for the image backbone"):
        export_model(models["image"], "hf", tmp_path / "hf")
    with pytest.raises(ExportFormatError, match="unknown export format 'keras'"):
        export_model(models["text"], "keras", tmp_path / "keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a folder that is not an earlier export is never replaced; an earlier export is
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportFormatError, match="is not an earlier export"):
        export_model(models["text"], "hf", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportFormatError, match="must lie outside the model folder"):
        export_model(models["text"], "native", models["text"] / "copy")
    first = export_model(models["text"], "hf", tmp_path / "again")
    assert export_model(models["text"], "hf", first) == first and (first / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]   # no temp folders left


def test_cli_export_formats(models, tmp_path, capsys):
    out = tmp_path / "cli-torchscript"
    assert main(["export", str(models["text"]), "--format", "torchscript", "--out", str(out)]) == 0
    assert (out / "model.pt").is_file() and "max |logit difference|" in capsys.readouterr().out
    # a run directory: its best/ is used as it is, the default folder is RUN_DIR/export/FORMAT
    run_dir = models["image"].parent
    assert main(["export", str(run_dir), "--format", "timm"]) == 0
    assert (run_dir / "export" / "timm" / "model.safetensors").is_file()
    assert main(["export", str(models["text"]), "--format", "timm"]) == 2
    assert "not available for the text backbone" in capsys.readouterr().err


def test_readme_export_example_runs(models, tmp_path, monkeypatch, capsys):
    import shutil

    from tests.test_readme import readme_block

    shutil.copytree(models["text"].parent, tmp_path / "runs" / "quickstart-text",
                    ignore=shutil.ignore_patterns("export"))
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_block("export"), "README.md:export", "exec"), {})
    out = capsys.readouterr().out
    labels = automl_pt.load(models["text"]).predict(["a rocket to the moon", "fresh bread and soup"]).labels
    assert str(labels) in out
    assert ("'README.md', 'automl_pt_export.json', 'automl_pt_text_preprocessor.json', "
            "'model.onnx'") in out   # the fitted max_length travels with the tokenizer
    assert (tmp_path / "runs" / "quickstart-text" / "export" / "onnx" / "model.onnx").is_file()


def test_a_model_that_does_not_trace_is_refused_with_the_reason(tmp_path_factory, tmp_path):
    """The Audio Spectrogram Transformer computes its filter banks in numpy: tracing freezes them
    (the traced model answers for the traced batch only) and torch.export cannot follow them."""
    best = cached(tmp_path_factory.getbasetemp() / "exported-models", "ast",
                  lambda root: audio_best(root, "ast"))
    with pytest.raises(ExportFormatError, match=r"torchscript export of the audio backbone .*ASTBackbone"
                       r".*output shape \(2, 3\) differs from PyTorch's \(3, 3\)"):
        export_model(best, "torchscript", tmp_path / "ts")
    with pytest.raises(ExportFormatError, match=r"onnx export of the audio backbone .*\(ASTBackbone\) "
                       r"failed: TorchExportError: .*numpy"):
        export_model(best, "onnx", tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []
    assert automl_pt.load(best).predict(raw_inputs("audio", best)).probabilities.shape == (5, 3)
