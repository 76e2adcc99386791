"""Parameter-efficient strategies (lora, ia3, bitfit) on a tiny random BERT: what trains, that it
learns, that merged weights predict as the adapted model did, and a study end to end (real
Optuna, DuckDB, export, load without peft)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import automl_pt
from automl_pt import Study
from automl_pt.train.adapters import apply_strategy, count_parameters
from automl_pt.errors import BackboneError, ConfigError
from automl_pt.model import Backbone, ClassificationTask, TrialModel
from automl_pt.registry import Metric
from automl_pt.train.training import fine_tune, predict_logits
from tests.conftest import make_topic_rows, study_toml

PEFT_KEYS = ("lora_", "ia3_", "base_layer")
RECIPE = {"learning_rate": 3e-3, "head_lr_multiplier": 1.0, "layer_decay": 1.0, "weight_decay": 0.0,
          "warmup_ratio": 0.0, "epochs": 4, "batch_size": 8, "dropout": 0.0, "label_smoothing": 0.0,
          "schedule": "linear", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0}


def tiny_model(tiny_bert, num_labels: int = 3) -> TrialModel:
    from automl_pt_text.backbone import load_transformers_backbone

    torch.manual_seed(0)
    backbone = load_transformers_backbone(str(tiny_bert), "tiny-bert", {})
    return TrialModel(backbone, ClassificationTask().build_head(backbone.feature_dim, num_labels, {}))


def trained_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def topic_tensors(model: TrialModel, n: int, seed: int):
    rows = make_topic_rows(n, seed)
    names = sorted({r["label"] for r in rows})
    prep = model.backbone.preprocessor({"max_length": 32})
    return prep, prep.encode([r["text"] for r in rows]), np.array([names.index(r["label"]) for r in rows])


@pytest.mark.parametrize("strategy, allowed", [
    ("lora", lambda n: ".lora_A." in n or ".lora_B." in n),
    ("ia3", lambda n: ".ia3_l." in n),
    ("bitfit", lambda n: n.endswith(".bias") or "LayerNorm" in n),
])
def test_each_strategy_trains_only_its_parameters_and_the_head(tiny_bert, strategy, allowed):
    model = tiny_model(tiny_bert)
    apply_strategy(model.backbone, {"strategy": strategy})
    names = trained_names(model)
    head = {f"head.{n}" for n, _ in model.head.named_parameters()}
    assert head <= names                                     # the head always trains
    backbone = names - head
    assert backbone and all(allowed(n) for n in backbone), sorted(backbone)[:5]
    trainable, total = count_parameters(model)
    assert 0 < trainable < total / 5
    if strategy == "lora":   # default targets: attention queries and values of every layer
        adapted = {n.split(".lora_")[0] for n in backbone}
        assert adapted == {f"backbone.model.encoder.layer.{i}.attention.self.{m}"
                           for i in range(2) for m in ("query", "value")}


def test_lora_targets_all_adapts_every_block_linear_layer(tiny_bert):
    model = tiny_model(tiny_bert)
    apply_strategy(model.backbone, {"strategy": "lora", "lora_targets": "all"})
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trained_names(model) if ".lora_" in n}
    assert adapted == {"query", "key", "value", "dense"}


@pytest.mark.parametrize("strategy", ["lora", "ia3", "bitfit"])
def test_training_learns_only_the_adapters_and_merged_weights_predict_the_same(tiny_bert, strategy):
    model = tiny_model(tiny_bert)
    prep, train, train_y = topic_tensors(model, 16, 1)
    _, val, val_y = topic_tensors(model, 6, 2)
    adapters = apply_strategy(model.backbone, {"strategy": strategy})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    metrics = {"accuracy": Metric("accuracy", lambda y, p, _: float(np.mean(y == p)))}
    result = fine_tune(model, ClassificationTask(), train, train_y, val, val_y,
                       {**RECIPE, "strategy": strategy}, metrics, "accuracy", True,
                       torch.device("cpu"), seed=0, collate=prep.collate)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    model.load_state_dict(result.best_state)
    after = model.state_dict()
    assert all(torch.equal(after[n], before[n]) for n in frozen)          # frozen stays frozen
    moved = [n for n in trained_names(model.backbone) if not torch.equal(after[f"backbone.{n}"],
                                                                          before[f"backbone.{n}"])]
    assert moved                                                          # the adapters learned
    adapted_logits = predict_logits(model, val, torch.device("cpu"), 32, prep.collate)
    if adapters is not None:
        adapters.merge()
    merged = model.state_dict()
    assert not [k for k in merged if any(p in k for p in PEFT_KEYS)]
    # a plain backbone (no adapters) with the merged weights predicts as the adapted one did
    plain = tiny_model(tiny_bert)
    plain.load_state_dict(merged)
    torch.testing.assert_close(predict_logits(plain, val, torch.device("cpu"), 32, prep.collate),
                               adapted_logits, rtol=1e-4, atol=1e-5)


class _Plain(Backbone):
    modality = "text"
    feature_dim = 4
    name = "plain-encoder"

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4)])


@pytest.mark.parametrize("strategy", ["lora", "ia3"])
def test_backbone_without_targets_is_rejected_by_name(strategy):
    with pytest.raises(BackboneError, match=rf"strategy '{strategy}'.*'plain-encoder' \(_Plain\)"):
        apply_strategy(_Plain(), {"strategy": strategy})
    # bitfit needs no targets: the biases train
    backbone = _Plain()
    apply_strategy(backbone, {"strategy": "bitfit"})
    assert trained_names(backbone) == {"layers.0.bias"}


def test_lora_parameters_are_in_the_space_and_suggested_only_for_lora(tmp_path, tiny_bert, topic_data,
                                                                       text_host):
    import optuna

    from automl_pt.engine.search import suggest_params

    path = study_toml(tmp_path, tiny_bert, space='strategy = ["full", "lora"]\nlora_rank = [2, 4]')
    study = Study.from_config(path, host=text_host)
    space = study.prepare().space
    assert {"lora_rank", "lora_alpha", "lora_dropout", "lora_targets"} <= set(space)
    assert space["lora_rank"].choices == (2, 4)
    assert space["lora_targets"].choices == ("default", "all")
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        params = suggest_params(ostudy.ask(), space)
        seen.add(params["strategy"])
        has_lora = {k for k in params if k.startswith("lora_")}
        assert has_lora == ({"lora_rank", "lora_alpha", "lora_dropout", "lora_targets"}
                            if params["strategy"] == "lora" else set())
    assert seen == {"full", "lora"}
    no_lora = study_toml(tmp_path, tiny_bert, space='strategy = ["full", "bitfit"]')
    assert not [n for n in Study.from_config(no_lora, host=text_host).prepare().space if n.startswith("lora_")]
    bad = study_toml(tmp_path, tiny_bert, space='strategy = "lora"\nlora_rank = [0]\nlora_targets = ["most"]')
    with pytest.raises(ConfigError, match=r"lora_rank.*0 is not an integer >= 1(.|\n)*lora_targets"):
        Study.from_config(bad, host=text_host).prepare()


def test_known_good_configurations_are_inside_the_space():
    from automl_pt.builtin.search_space import default_space
    from automl_pt.engine.seeding import KNOWN_GOOD

    space = default_space()
    for strategy, config in KNOWN_GOOD.items():
        for name, value in config.items():
            assert space[name].inferred_domain().problem(value) is None, (strategy, name)


def test_study_searches_strategies_exports_merged_model_loadable_without_peft(
        tmp_path, tiny_bert, topic_data, text_host):
    fixed = "\n".join(f"{k} = {v!r}" for k, v in RECIPE.items()
                      if k not in ("learning_rate", "batch_size", "epochs"))
    space = f'strategy = ["lora", "ia3", "bitfit", "full"]\nepochs = 2\nbatch_size = [8]\n{fixed}\n' \
            'lora_targets = "default"'
    path = study_toml(tmp_path, tiny_bert, trials=4, space=space, resources='workers = "inline"')
    text = path.read_text().replace('sampler = "tpe"', 'sampler = "grid"').replace(
        "learning_rate = { low = 1e-4, high = 3e-3, log = true }", "learning_rate = 3e-3")
    # soup = "none": best/ is the best trial itself, whose validation score is compared below
    path.write_text(text.replace("'", '"').replace('sampler = "grid"', 'sampler = "grid"\nsoup = "none"'))
    results = Study.from_config(path, host=text_host).run(progress=False)
    trials = results.trials()
    assert set(trials["state"]) == {"COMPLETE"}
    assert set(trials["strategy"]) == {"lora", "ia3", "bitfit", "full"}
    # each trial recorded what its strategy trains (counted here on a fresh model)
    for _, t in trials.iterrows():
        model = tiny_model(tiny_bert)
        apply_strategy(model.backbone, json.loads(t["params"]))
        trainable, total = count_parameters(model)
        assert t["trainable_params"] == trainable, t["strategy"]
        assert t["trainable_pct"] == pytest.approx(100.0 * trainable / total)
        assert (t["trainable_pct"] == pytest.approx(100.0)) == (t["strategy"] == "full")
    assert (trials["peak_memory_mb"] > 0).all()
    board = results.leaderboard()
    assert "trainable_pct" in board.columns
    best = trials.sort_values("value", ascending=False).iloc[0]

    from safetensors.torch import load_file

    kept = list((tmp_path / "run" / "trials").glob("*/model.safetensors"))
    assert len(kept) == 1
    assert not [k for k in load_file(str(kept[0])) if any(p in k for p in PEFT_KEYS)]
    out = results.best_model_dir
    assert not [k for k in load_file(str(out / "backbone" / "model.safetensors"))
                if any(p in k for p in PEFT_KEYS)]
    # the exported model scores on validation what the trial measured while training
    validation = pd.read_csv(topic_data["validation"])
    prediction = automl_pt.load(out).predict(validation["text"].tolist())
    accuracy = float(np.mean(np.array(prediction.labels) == validation["label"].to_numpy()))
    assert accuracy == pytest.approx(best["value"], abs=1e-9)
    # and loads in a process where peft cannot be imported
    script = textwrap.dedent(f"""
        import sys, json
        sys.modules["peft"] = None          # any import of peft fails
        import automl_pt
        p = automl_pt.load({str(out)!r}).predict({validation["text"].tolist()!r})
        print(json.dumps(p.probabilities.tolist()))
        assert "peft" not in [m for m in sys.modules if sys.modules[m] is not None]
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env=_env())
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose(np.array(json.loads(run.stdout.strip().splitlines()[-1])),
                               prediction.probabilities, rtol=1e-5, atol=1e-6)


def _env() -> dict[str, str]:
    """This checkout's packages first on the path of a child process."""
    import os
    from pathlib import Path

    import automl_pt_text

    paths = [str(Path(automl_pt.__file__).parents[1]), str(Path(automl_pt_text.__file__).parents[1])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
