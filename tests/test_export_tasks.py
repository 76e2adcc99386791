"""Exports of regression and multi-label models give what the task predicts: a regression's
numbers in the target's units (the target's mean and standard deviation folded into the final
linear layer, so hf / timm folders load in plain transformers / timm and give real numbers), a
multi-label model's per-label probabilities (onnx / torchscript) with its thresholds next to the
model; every card says what the model predicts and its snippet runs and gives ``predict``'s
answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import automl_pt
from automl_pt.export.formats import EXPORT_CONFIG, export_model
from tests.support.exported import cached, image_task_best, text_task_best
from tests.test_export_formats import run_snippet

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

TEXTS = ["rocket orbit planet moon galaxy", "bread cheese soup", "judge court jury rocket",
         "a", "bread cheese soup apple kitchen and the galaxy with a comet telescope"]
EXAMPLE_TEXTS = ["an example text", "another one"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp() / "exported-models"
    return {f"{modality}-{kind}": cached(base, f"{modality}-{kind}",
                                         lambda root, b=build, k=kind: b(root, k))
            for modality, build in (("text", text_task_best), ("image", image_task_best))
            for kind in ("regression", "multilabel")}


def image_inputs(best: Path) -> list[str]:
    return sorted(str(p) for p in (best.parent.parent / "data" / "test_images").rglob("*.png"))[:5]


def inputs_of(name: str, best: Path) -> list:
    return TEXTS if name.startswith("text") else image_inputs(best)


def write_photo(cwd: Path, best: Path) -> list[str]:
    from PIL import Image

    Image.open(image_inputs(best)[0]).convert("RGB").save(cwd / "photo.png")
    return [str(cwd / "photo.png")]


def run_file(fmt: str, folder: Path, predictor, items: list) -> np.ndarray:
    """The exported file's outputs on ``items``, preprocessed as the model preprocesses them."""
    config = json.loads((folder / EXPORT_CONFIG).read_text())
    enc = predictor.preprocessor.collate(predictor.preprocessor.encode(items))
    names = [i["name"] for i in config["inputs"]]
    output = config["outputs"][0]["name"]
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        return session.run([output], {n: enc[n].numpy() for n in names})[0]
    model = torch.jit.load(str(folder / "model.pt"))
    with torch.no_grad():
        return model(*(enc[n] for n in names)).numpy()


def card(folder: Path) -> str:
    return (folder / "README.md").read_text()


# -- regression ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["text-regression", "image-regression"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_regression_onnx_and_torchscript_return_numbers_in_the_targets_units(models, name, fmt, tmp_path,
                                                                             monkeypatch):
    best = models[name]
    predictor = automl_pt.load(best)
    out = export_model(best, fmt, tmp_path / fmt, predictor=predictor)
    config = json.loads((out / EXPORT_CONFIG).read_text())
    assert config["task_kind"] == "regression"
    assert config["outputs"] == [{"name": "values", "shape": ["batch", 1]}]
    state = json.loads((best / "automl_pt.json").read_text())["task_state"]
    assert config["target"] == {"column": predictor.label_names[0], "mean": state["target_mean"],
                                "std": state["target_std"]}
    items = inputs_of(name, best)
    want = predictor.predict(items).values
    got = run_file(fmt, out, predictor, items)
    assert got.shape == (len(items), 1)
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-4, atol=1e-4)
    # not standardised: the numbers spread like the target's, around its mean
    assert abs(float(np.mean(got)) - state["target_mean"]) < 3 * state["target_std"]

    examples = EXAMPLE_TEXTS if name.startswith("text") else write_photo(tmp_path, best)
    ns = run_snippet(out, tmp_path, monkeypatch)
    np.testing.assert_allclose(ns["values"][:, 0], predictor.predict(examples).values, rtol=1e-4, atol=1e-4)


def test_regression_hf_folder_is_a_transformers_regression_with_the_scaling_folded_in(
        models, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    best = models["text-regression"]
    predictor = automl_pt.load(best)
    out = export_model(best, "hf", tmp_path / "hf", predictor=predictor)
    config = AutoConfig.from_pretrained(out)
    assert config.problem_type == "regression" and config.id2label == {0: "score"}
    # plain transformers + the head file, no automl_pt and no un-scaling step
    tokenizer, encoder = AutoTokenizer.from_pretrained(out), AutoModel.from_pretrained(out).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=predictor.preprocessor.max_length,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    head = load_file(str(out / "head.safetensors"))
    values = ((hidden * mask).sum(1) / mask.sum(1)) @ head["linear.weight"].T + head["linear.bias"]
    np.testing.assert_allclose(values[:, 0].numpy(), predictor.predict(TEXTS).values, rtol=1e-4, atol=1e-4)

    ns = run_snippet(out, tmp_path, monkeypatch)
    np.testing.assert_allclose(ns["values"].numpy(), predictor.predict(EXAMPLE_TEXTS).values,
                               rtol=1e-4, atol=1e-4)
    # the native model keeps its own head (automl_pt.load un-scales): exporting did not change it
    assert automl_pt.load(best).predict(TEXTS).values == pytest.approx(predictor.predict(TEXTS).values)


def test_regression_timm_folder_gives_numbers(models, tmp_path, monkeypatch):
    import timm

    best = models["image-regression"]
    predictor = automl_pt.load(best)
    out = export_model(best, "timm", tmp_path / "timm", predictor=predictor)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == ["brightness"] and model.num_classes == 1
    items = image_inputs(best)
    enc = predictor.preprocessor.encode(items)
    with torch.no_grad():
        got = model(predictor.model.backbone.normalize(enc["pixel_values"]))[:, 0].numpy()
    np.testing.assert_allclose(got, predictor.predict(items).values, rtol=1e-4, atol=1e-4)
    write_photo(tmp_path, best)
    ns = run_snippet(out, tmp_path, monkeypatch)
    np.testing.assert_allclose(ns["values"].numpy(), predictor.predict([str(tmp_path / "photo.png")]).values,
                               rtol=1e-4, atol=1e-4)


def test_regression_cards_say_it_predicts_a_number(models, tmp_path, monkeypatch):
    best = models["text-regression"]
    predictor = automl_pt.load(best)
    for fmt in ("native", "hf", "onnx"):
        text = card(export_model(best, fmt, tmp_path / fmt, predictor=predictor))
        assert "classifier" not in text and "softmax" not in text
        assert "regression model: it predicts one number per example, the value of `score`" in text
        assert "scored by `rmse`" in text and "## Target" in text
    assert "folded into the final linear layer" in card(tmp_path / "hf")
    assert "already hold the target's scaling" in card(tmp_path / "hf")
    assert "automl_pt.load applies it" in card(tmp_path / "native")
    assert "output: `values` (batch, 1)" in card(tmp_path / "onnx")
    ns = run_snippet(tmp_path / "native", tmp_path, monkeypatch)   # prints prediction.values
    assert list(ns["prediction"].values) == pytest.approx(list(predictor.predict(EXAMPLE_TEXTS).values))


# -- multi-label -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["text-multilabel", "image-multilabel"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_multilabel_onnx_and_torchscript_return_probabilities_with_thresholds_beside(
        models, name, fmt, tmp_path, monkeypatch):
    best = models[name]
    predictor = automl_pt.load(best)
    out = export_model(best, fmt, tmp_path / fmt, predictor=predictor)
    config = json.loads((out / EXPORT_CONFIG).read_text())
    assert config["task_kind"] == "multilabel"
    assert config["outputs"] == [{"name": "probabilities", "shape": ["batch", len(predictor.label_names)]}]
    saved = json.loads((best / "automl_pt.json").read_text())["task_state"]["thresholds"]
    assert config["thresholds"] == dict(zip(predictor.label_names, saved))
    items = inputs_of(name, best)
    expected = predictor.predict(items)
    got = run_file(fmt, out, predictor, items)
    assert ((got >= 0) & (got <= 1)).all()
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-5)
    labels = [[n for n, p in zip(config["labels"], row) if p >= config["thresholds"][n]] for row in got]
    assert labels == expected.labels

    examples = EXAMPLE_TEXTS if name.startswith("text") else write_photo(tmp_path, best)
    ns = run_snippet(out, tmp_path, monkeypatch)
    expected = predictor.predict(examples)
    np.testing.assert_allclose(ns["probabilities"], expected.probabilities, atol=1e-5)
    assert ns["labels"] == expected.labels


def test_multilabel_hf_folder_is_a_transformers_multi_label_model(models, tmp_path, monkeypatch):
    from transformers import AutoConfig

    best = models["text-multilabel"]
    predictor = automl_pt.load(best)
    out = export_model(best, "hf", tmp_path / "hf", predictor=predictor)
    config = AutoConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification"
    assert [config.id2label[i] for i in range(3)] == predictor.label_names == ["food", "law", "space"]
    ns = run_snippet(out, tmp_path, monkeypatch)
    expected = predictor.predict(EXAMPLE_TEXTS)
    np.testing.assert_allclose(ns["probabilities"].numpy(), expected.probabilities, atol=1e-5)
    assert ns["labels"] == expected.labels


def test_multilabel_timm_folder_and_card(models, tmp_path, monkeypatch):
    import timm

    best = models["image-multilabel"]
    predictor = automl_pt.load(best)
    out = export_model(best, "timm", tmp_path / "timm", predictor=predictor)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    items = image_inputs(best)
    enc = predictor.preprocessor.encode(items)
    with torch.no_grad():
        probs = model(predictor.model.backbone.normalize(enc["pixel_values"])).sigmoid().numpy()
    np.testing.assert_allclose(probs, predictor.predict(items).probabilities, atol=1e-5)
    examples = write_photo(tmp_path, best)
    ns = run_snippet(out, tmp_path, monkeypatch)
    expected = predictor.predict(examples)
    np.testing.assert_allclose(ns["probabilities"].numpy(), expected.probabilities, atol=1e-5)
    assert ns["labels"] == expected.labels


def test_multilabel_cards_say_it_predicts_a_set_of_labels_with_thresholds(models, tmp_path):
    best = models["text-multilabel"]
    predictor = automl_pt.load(best)
    thresholds = json.loads((best / "automl_pt.json").read_text())["task_state"]["thresholds"]
    for fmt in ("native", "hf", "torchscript"):
        text = card(export_model(best, fmt, tmp_path / fmt, predictor=predictor))
        assert "classifier" not in text and "softmax" not in text
        assert ("multi-label model: it predicts a set of labels per example, any of 3 labels "
                "(food, law, space)") in text
        assert "scored by `micro_f1`" in text and "## Thresholds" in text
        for label, t in zip(predictor.label_names, thresholds):
            assert f"| {label} | {t:.2f} |" in text
    assert "output: `probabilities` (batch, labels), one sigmoid per label" in card(tmp_path / "torchscript")
