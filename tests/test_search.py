"""Samplers, pruners and the search space."""

from __future__ import annotations

import json

import optuna
import pytest

from automl_pt import ConfigError, Study
from automl_pt.engine.search import make_pruner, make_sampler
from tests.conftest import study_toml
from tests.test_faults import fault_study


@pytest.mark.parametrize("sampler,cls", [("tpe", optuna.samplers.TPESampler),
                                         ("random", optuna.samplers.RandomSampler),
                                         ("gp", optuna.samplers.GPSampler)])
def test_samplers_run_a_study(tmp_path, tiny_bert, topic_data, text_host, sampler, cls):
    path = study_toml(tmp_path, tiny_bert, trials=2, space='epochs = 1\nbatch_size = [8]',
                      resources='workers = "inline"')
    path.write_text(path.read_text().replace('sampler = "tpe"', f'sampler = "{sampler}"'))
    study = Study.from_config(path, host=text_host)
    prepared = study.prepare()
    assert isinstance(make_sampler(study.config, prepared.space), cls)
    results = study.run(progress=False)
    assert (results.trials()["state"] == "COMPLETE").sum() == 2


def test_grid_sampler_walks_the_grid(tmp_path, tiny_bert, topic_data, text_host):
    space = ('epochs = 1\nbatch_size = [8]\nstrategy = ["linear_probe", "full"]\nhead_lr_multiplier = 10.0\n'
             'layer_decay = 0.9\nweight_decay = 0.01\nwarmup_ratio = 0.0\ndropout = 0.1\n'
             'label_smoothing = 0.0\nschedule = "cosine"')
    path = study_toml(tmp_path, tiny_bert, trials=4, space=space, resources='workers = "inline"')
    text = path.read_text().replace('sampler = "tpe"', 'sampler = "grid"').replace(
        'learning_rate = { low = 1e-4, high = 3e-3, log = true }', 'learning_rate = [1e-3, 3e-3]')
    path.write_text(text)
    results = Study.from_config(path, host=text_host).run(progress=False)
    combos = {(json.loads(p)["strategy"], json.loads(p)["learning_rate"]) for p in results.trials()["params"]}
    assert combos == {(s, lr) for s in ("linear_probe", "full") for lr in (1e-3, 3e-3)}


def test_pruners(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert)
    study = Study.from_config(path, host=text_host)
    space = study.prepare().space
    for name, cls in (("hyperband", optuna.pruners.HyperbandPruner),
                      ("median", optuna.pruners.MedianPruner), ("none", optuna.pruners.NopPruner)):
        study.config.search.pruner = name
        assert isinstance(make_pruner(study.config, space), cls)


def test_median_pruner_stops_a_hopeless_trial_after_one_epoch(tmp_path, tiny_bert, topic_data, monkeypatch):
    from tests.test_faults import SUPPORT

    monkeypatch.syspath_prepend(str(SUPPORT))
    monkeypatch.setenv("AUTOML_PT_FAULT", "sabotage@4")
    monkeypatch.setenv("AUTOML_PT_FAULT_DIR", str(tmp_path / "faults"))
    path = fault_study(tmp_path, tiny_bert, trials=4, resources='workers = "inline"',
                       space='strategy = ["full"]\nepochs = 3\nbatch_size = [8]\nlearning_rate = 3e-3')
    path.write_text(path.read_text().replace('pruner = "none"', 'pruner = "median"').replace(
        'learning_rate = { low = 1e-4, high = 3e-3, log = true }\n', ''))
    results = Study.from_config(path).run(progress=False)
    trials = results.trials().set_index("number")
    assert trials.loc[3, "state"] == "PRUNED" and trials.loc[3, "state_reason"] == "pruned"
    curves = results.curves()
    assert curves[curves["trial"] == 3]["epoch"].max() == 1     # cut short after its first epoch
    assert (curves[curves["trial"] == 0]["epoch"].max()) == 3


def test_space_overrides_keep_types(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert, space='batch_size = { low = 4, high = 8 }\nepochs = 2')
    space = Study.from_config(path, host=text_host).prepare().space
    assert space["batch_size"].kind == "int" and space["epochs"].choices == (2,)
    path = study_toml(tmp_path, tiny_bert, space='strategy = { low = 1, high = 2 }')
    with pytest.raises(ConfigError, match="strategy is categorical"):
        Study.from_config(path, host=text_host).prepare()
    path = study_toml(tmp_path, tiny_bert, space='strategy = ["full", "prompt_tuning"]')
    with pytest.raises(ConfigError, match="'prompt_tuning' is not one of 'linear_probe', 'full'"):
        Study.from_config(path, host=text_host).prepare()
