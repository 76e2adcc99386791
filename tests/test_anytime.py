"""Presets, timeout planning and the anytime ``best/`` folder, with real Optuna storage, real
worker processes and real signals (faults injected by tests/support/fault_plugin.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from automl_pt import ConfigError, Study, load
from automl_pt.engine.budget import OVER_BUDGET, estimate_trial_seconds
from automl_pt.spec.config import load_config
from automl_pt.spec.presets import PRESETS
from automl_pt.engine.pruning import StrategyMedianPruner
from automl_pt.storage.rundir import claim_run_dir
from automl_pt.engine.search import build_search_space, make_pruner
from tests.conftest import study_toml
from tests.test_faults import db_trials, env_for, fault_study, faults  # noqa: F401 (fixture)


def _space(path, host):
    cfg = load_config(path)
    task = host.registry.tasks[cfg.task.type]
    return cfg, build_search_space(cfg, task, host)


def test_preset_fills_what_the_file_leaves_out(tmp_path, tiny_bert, topic_data, text_host):
    # the fixture's file sets batch_size and learning_rate in [search.space] and pruner = "none"
    path = study_toml(tmp_path, tiny_bert, study='preset = "fast"', space="batch_size = [8]")
    text = path.read_text().replace("trials = 3\n", "")
    path.write_text(text)
    cfg, space = _space(path, text_host)
    fast = PRESETS["fast"]
    assert cfg.study.trials == fast["study"]["trials"]                     # from the preset
    assert cfg.search.pruner == "none"                                      # the file's
    assert space["strategy"].choices == tuple(fast["space"]["strategy"])    # from the preset
    assert (space["epochs"].low, space["epochs"].high) == (2, 4)             # from the preset
    assert space["min_steps"].choices == (50,)                              # from the preset
    assert space["batch_size"].choices == (8,)                              # the file's
    assert space["learning_rate"].low == 1e-4                               # the file's

    path.write_text(text.replace('pruner = "none"\n', "").replace('preset = "fast"', 'preset = "best"')
                    .replace("batch_size = [8]", "epochs = 3"))
    cfg, space = _space(path, text_host)
    assert cfg.study.trials == 50 and cfg.search.pruner == "hyperband"
    assert space["epochs"].choices == (3,)                                  # the file's
    assert set(space["strategy"].choices) >= {"full", "freeze_then_unfreeze", "linear_probe"}


def test_no_preset_keeps_the_defaults(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert)
    cfg, space = _space(path, text_host)
    assert cfg.study.preset is None and cfg.search.preset_space == {}
    assert (space["epochs"].low, space["epochs"].high) == (1, 2)


def test_unknown_preset_is_an_error_at_its_line(tmp_path, tiny_bert, topic_data):
    path = study_toml(tmp_path, tiny_bert, study='preset = "fastest"')
    line = path.read_text().splitlines().index('preset = "fastest"') + 1
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path.resolve()}:{line}: [study] preset: unknown preset 'fastest'" in str(err.value)
    assert "did you mean 'fast'" in str(err.value)


def test_readme_documents_every_preset_value():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Presets", 1)[1].split("\n## ", 1)[0]
    for name, preset in PRESETS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}`"))
        for value in [*preset["study"].values(), *preset["search"].values()]:
            assert str(value) in row, (name, value)
        for key, value in preset["space"].items():
            assert key in row, (name, key)


class _T:
    def __init__(self, params, duration, setup, epochs):
        self.params = params
        self.user_attrs = {"duration_s": duration, "setup_s": setup,
                           "history": [{"epoch": e} for e in range(1, epochs + 1)]}


def test_estimate_uses_the_most_similar_finished_trials():
    finished = [_T({"backbone": "a", "strategy": "full"}, 12.0, 2.0, 2),        # 5 s per epoch
                _T({"backbone": "a", "strategy": "linear_probe"}, 3.0, 1.0, 4)]
    assert estimate_trial_seconds(finished, {"backbone": "a", "strategy": "full", "epochs": 4}) == 22.0
    assert estimate_trial_seconds(finished, {"backbone": "a", "strategy": "linear_probe", "epochs": 2}) == 2.0
    assert estimate_trial_seconds([], {"epochs": 3}) is None                    # first trial: runs


def test_auto_pruner_compares_a_trial_with_its_own_strategy():
    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.CategoricalDistribution(["full", "freeze_then_unfreeze"])
    for value in (0.8, 0.9):
        study.add_trial(optuna.trial.create_trial(
            params={"strategy": "full"}, distributions={"strategy": dist}, value=value,
            intermediate_values={1: value}))
    pruner = StrategyMedianPruner()
    slow = optuna.trial.create_trial(params={"strategy": "freeze_then_unfreeze"},
                                     distributions={"strategy": dist}, value=0.4,
                                     intermediate_values={1: 0.4},
                                     state=optuna.trial.TrialState.RUNNING)
    behind = optuna.trial.create_trial(params={"strategy": "full"}, distributions={"strategy": dist},
                                       value=0.5, intermediate_values={1: 0.5},
                                       state=optuna.trial.TrialState.RUNNING)
    ahead = optuna.trial.create_trial(params={"strategy": "full"}, distributions={"strategy": dist},
                                      value=0.95, intermediate_values={1: 0.95},
                                      state=optuna.trial.TrialState.RUNNING)
    assert not pruner.prune(study, slow)      # a slow starter is judged against its own kind
    assert pruner.prune(study, behind)        # clearly behind after its first epoch
    assert not pruner.prune(study, ahead)


def test_auto_is_the_default_pruner(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert)
    path.write_text(path.read_text().replace('pruner = "none"\n', ""))
    cfg, space = _space(path, text_host)
    assert cfg.search.pruner == "auto"
    assert isinstance(make_pruner(cfg, space), StrategyMedianPruner)


def _enqueue(path, trials):
    """Create the study's run dir and Optuna study with ``trials`` (param dicts) queued first."""
    study = Study.from_config(path)
    claim_run_dir(study.config)
    ostudy = study.optuna_study(study.prepare(), heartbeat=False)
    for params in trials:
        ostudy.enqueue_trial(params)


@pytest.mark.parametrize("workers", ["process", "inline"])
def test_a_trial_that_cannot_finish_before_the_timeout_is_not_started(
        tmp_path, tiny_bert, topic_data, faults, workers):
    faults("slow")                                        # 0.3 s per step: 8 steps per epoch
    path = fault_study(tmp_path, tiny_bert, trials=6, resources=f'workers = "{workers}"',
                       space='strategy = ["full"]\nepochs = { low = 1, high = 200 }\nbatch_size = [8]')
    # trial 0 takes seconds (minutes on a loaded machine); 200 epochs take 8 min at least
    path.write_text(path.read_text().replace("max_failures = 3", 'max_failures = 3\ntimeout = "300s"'))
    _enqueue(path, [{"epochs": 1, "learning_rate": 1e-3}] + [{"epochs": 200}] * 4)
    results = Study.from_config(path).run(progress=False)
    trials = db_trials(tmp_path / "run").set_index("number")
    assert trials.loc[0, "state"] == "COMPLETE"           # the first trial always runs
    skipped = trials[trials["state_reason"] == OVER_BUDGET]
    assert list(skipped.index) == [1, 2, 3]               # 200 epochs do not fit; 3 in a row stop it
    assert not any((tmp_path / "run" / "trials" / f"{n:05d}").exists() for n in skipped.index)
    assert all("not started: estimated" in e for e in skipped["error"])
    assert list(trials["state"]) == ["COMPLETE", "FAIL", "FAIL", "FAIL", "WAITING"]
    assert load(results.best_model_dir).predict(["rocket orbit moon"]).labels


def _manifest_trial(run_dir):
    try:
        return json.loads((run_dir / "best" / "automl_pt.json").read_text())["trial"]
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_best_is_there_after_the_first_trial_replaced_by_better_ones_and_survives_a_stop(
        tmp_path, tiny_bert, topic_data, faults, sig):
    path = fault_study(tmp_path, tiny_bert, trials=5,
                       space='strategy = ["full"]\nepochs = 3\nbatch_size = [8]')
    run_dir = tmp_path / "run"
    # trial 0 is sabotaged (predicts one class), trial 1 trains properly: it must replace it
    _enqueue(path, [{"learning_rate": 3e-3}, {"learning_rate": 3e-3}])
    proc = subprocess.Popen([sys.executable, "-m", "automl_pt.cli", "run", str(path), "--quiet"],
                            env=env_for(tmp_path, "sabotage@1+slow"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.monotonic() + 400
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            number = _manifest_trial(run_dir)
            if number is not None and (not seen or seen[-1] != number):
                seen.append(number)
                assert load(run_dir / "best").predict(["bread soup"]).labels   # loadable every time
            if len(list((tmp_path / "faults").glob("start-*"))) >= 3 and 1 in seen:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(sig)                              # trial 2 is running
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert seen[:2] == [0, 1], seen                        # first trial exported, then replaced
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}")
    ostudy = optuna.load_study(study_name="tiny", storage=storage)
    assert ostudy.best_trial.number == _manifest_trial(run_dir) == 1
    assert ostudy.trials[1].value > ostudy.trials[0].value
    prediction = load(run_dir / "best").predict(["rocket orbit moon", "judge court jury"])
    assert len(prediction.labels) == 2
    assert not list(run_dir.glob(".best.*"))                # no staging folder left behind
