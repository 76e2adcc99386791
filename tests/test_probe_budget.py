"""The closed-form probe as every study's first trial, known-good seeds, training length fitted
to the data (min_steps, early stopping) and label-efficiency budgets."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch

from automl_pt import Study
from automl_pt.builtin.metrics import accuracy
from automl_pt.model import ClassificationTask, TrialModel
from automl_pt.core.linear import L2_GRID, fit_logistic
from automl_pt.storage.store import Results, best_trial, trials_frame
from automl_pt.train.probe import meets_probe_floor, probe_floor
from automl_pt.registry import Metric
from automl_pt.train.training import TrainerCallback, fine_tune, planned_epochs
from tests.conftest import study_toml

METRICS = {"accuracy": Metric("accuracy", accuracy)}
SGD = dict(strategy="linear_probe", learning_rate=1e-3, head_lr_multiplier=1.0, layer_decay=1.0,
           weight_decay=0.01, warmup_ratio=0.0, epochs=4, batch_size=32, dropout=0.0,
           label_smoothing=0.0, schedule="cosine")


def blobs(n_per_class: int, seed: int, dim: int = 16, classes: int = 3):
    """Separable classes whose features sit far from the origin on a large common offset (raw
    frozen features often look like this): easy once standardised, slow for a few SGD epochs."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(classes, dim)) * 0.5
    x = np.concatenate([c + 0.1 * rng.normal(size=(n_per_class, dim)) for c in centers]) + 20.0
    y = np.repeat(np.arange(classes), n_per_class)
    return torch.tensor(x, dtype=torch.float32), y


def score(y, pred, probs):
    return {"accuracy": accuracy(y, pred, probs)}


class _Flat(torch.nn.Module):
    feature_dim = 16

    def num_layers_and_ids(self):
        return 1, {}


def sgd_probe(train, val, test, params=SGD):
    task = ClassificationTask()
    torch.manual_seed(0)
    model = TrialModel(_Flat(), task.build_head(16, 3, {"dropout": 0.0}))
    result = fine_tune(model, task, {"features": train[0]}, train[1], {"features": val[0]}, val[1],
                       params, METRICS, "accuracy", True, torch.device("cpu"), seed=0)
    model.load_state_dict(result.best_state)
    with torch.no_grad():
        pred = model({"features": test[0]}).argmax(1).numpy()
    return accuracy(test[1], pred)


def test_lbfgs_probe_beats_or_equals_the_sgd_probe_on_a_separable_problem():
    train, val, test = blobs(20, 1), blobs(10, 2), blobs(30, 3)
    fit = fit_logistic(train[0], train[1], val[0], val[1], 3, score, "accuracy", True)
    pred = (test[0] @ fit.weight.T + fit.bias).argmax(1).numpy()
    lbfgs_test = accuracy(test[1], pred)
    sgd_test = sgd_probe(train, val, test)
    assert lbfgs_test == 1.0          # separable: the closed-form probe gets it all
    assert lbfgs_test >= sgd_test
    assert sgd_test < 1.0             # the 4-epoch SGD probe on raw features does not


def test_regularisation_is_chosen_on_validation():
    train, val = blobs(20, 1), blobs(10, 2)
    fit = fit_logistic(train[0], train[1], val[0], val[1], 3, score, "accuracy", True)
    assert [r["l2"] for r in fit.path] == sorted(L2_GRID, reverse=True)
    best = max(fit.path, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert fit.l2 == best["l2"] and fit.val_loss == pytest.approx(best["val_loss"])
    # a validation set whose labels disagree with training prefers the flattest model: the
    # strongest penalty (its loss is closest to uniform), unlike the clean one
    flipped = fit_logistic(train[0], train[1], val[0], (val[1] + 1) % 3, 3, score, "accuracy", True)
    assert flipped.l2 == max(r["l2"] for r in flipped.path)
    assert fit.l2 < flipped.l2
    # the standardisation is folded into the weights: raw features in, same metric out
    raw = (val[0] @ fit.weight.T + fit.bias).argmax(1).numpy()
    assert accuracy(val[1], raw) == pytest.approx(fit.metrics["accuracy"])


def _optuna(run_dir, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}")


def test_a_study_starts_with_the_probe_then_known_good_configurations_and_never_reenqueues(
        tmp_path, tiny_bert, topic_data, text_host):
    space = 'epochs = { low = 1, high = 2 }\nbatch_size = [8]\nmin_steps = 24'
    path = study_toml(tmp_path, tiny_bert, trials=3, space=space, resources='workers = "inline"')
    results = Study.from_config(path, host=text_host).run(progress=False)
    ostudy = _optuna(tmp_path / "run")
    trials = ostudy.get_trials()
    assert [t.params["strategy"] for t in trials] == ["linear_probe", "full", "freeze_then_unfreeze"]
    assert [t.user_attrs["seeded"] for t in trials] == ["baseline", "known_good", "known_good"]
    probe = trials[0]
    assert probe.state == optuna.trial.TrialState.COMPLETE
    assert probe.user_attrs["probe_l2"] > 0 and probe.user_attrs["best_epoch"] == 1
    assert probe.user_attrs["epochs_run"] == 1 and len(probe.user_attrs["history"]) == 1
    # known-good values clipped into the study's space (learning_rate low = 1e-4, batch_size [8])
    assert trials[1].params["learning_rate"] == pytest.approx(1e-4)
    assert trials[1].params["batch_size"] == 8 and trials[1].params["epochs"] == 2
    # training length: epochs searched (a range) -> stretched to min_steps on 60 examples
    full = trials[1].user_attrs
    assert full["epochs_planned"] == planned_epochs(2, 8, 24) == 3
    assert full["steps"] == full["epochs_run"] * 8 == 24
    assert probe_floor(ostudy) == probe.value
    assert meets_probe_floor(ostudy, ostudy.best_value)
    board = results.leaderboard()
    assert {"epochs_run", "steps"} <= set(board.columns)
    assert int(board.loc[board["trial"] == 0, "steps"].iloc[0]) == 1
    # the exported model is the best trial, never below the probe on validation
    meta = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert meta["validation"]["accuracy"] >= probe.value
    # every trial records its validation loss (ties on the metric rank by it), per epoch too
    for t in trials:
        assert 0 < t.user_attrs["validation_loss"] < 10
        assert all("validation_loss" in row for row in t.user_attrs["history"])
    kept = trials[1].user_attrs
    assert kept["validation_loss"] == kept["history"][kept["best_epoch"] - 1]["validation_loss"]
    assert board.loc[0, "trial"] == best_trial(ostudy).number
    manifest = json.loads((tmp_path / "run" / "best" / "automl_pt.json").read_text())
    assert manifest["trial"] == best_trial(ostudy).number
    assert set(results.trials()["validation_loss"].dropna().round(6)) == \
        {round(t.user_attrs["validation_loss"], 6) for t in trials}

    # resuming with a larger budget runs new trials but enqueues nothing again
    Study.from_config(path, host=text_host, study={"trials": 4}).run(progress=False)
    trials = _optuna(tmp_path / "run").get_trials()
    assert len(trials) == 4 and "seeded" not in trials[3].user_attrs
    # TPE, led by the probe, draws linear_probe again (5 times in a row here before
    # probe_once): the sampler gives that draw the least-tried other strategy instead (partial,
    # the one strategy of the space the three seeds left untried)
    assert trials[3].params["strategy"] == "partial"
    assert trials[3].state == optuna.trial.TrialState.COMPLETE
    assert sum("seeded" in t.user_attrs for t in trials) == 3


def test_baseline_and_known_good_keys(tmp_path, tiny_bert, topic_data, text_host):
    from automl_pt.engine.seeding import plan

    def planned(search_extra: str, space: str):
        path = study_toml(tmp_path, tiny_bert, trials=10, space=space)
        path.write_text(path.read_text().replace('pruner = "none"', f'pruner = "none"\n{search_extra}'))
        study = Study.from_config(path, host=text_host)
        space = study.prepare().space
        return space, [(p["strategy"], a["seeded"]) for p, a in plan(study.config, space, True)]

    space, seeds = planned("", 'strategy = ["full"]\nepochs = 1')
    assert space["strategy"].choices == ("full",) and seeds == [("full", "known_good")]
    assert space["min_steps"].choices == (0,)      # epochs fixed: taken as given
    space, _ = planned("", 'epochs = [3]')
    assert space["min_steps"].choices == (0,)      # a one-value list is fixed too
    space, _ = planned("", 'epochs = [3, 6]')
    assert space["min_steps"].choices == (150,)    # a list to search is stretched
    space, seeds = planned("baseline = true", 'strategy = ["full"]')
    assert space["strategy"].choices == ("linear_probe", "full")
    assert seeds == [("linear_probe", "baseline"), ("full", "known_good")]
    assert space["min_steps"].choices == (150,)
    _, seeds = planned("baseline = false\nknown_good = false", 'epochs = 1')
    assert seeds == []
    _, seeds = planned("baseline = false", 'epochs = 1')
    assert seeds == [(s, "known_good") for s in ("linear_probe", "full", "freeze_then_unfreeze", "partial")]


def test_min_steps_makes_a_tiny_dataset_train_more_epochs():
    train, val = blobs(4, 1), blobs(4, 2)          # 12 examples, batch 8: 2 steps per epoch
    task = ClassificationTask()
    seen = []

    class Count(TrainerCallback):
        def on_epoch_end(self, state):
            seen.append(state.step)

    params = {**SGD, "strategy": "full", "epochs": 2, "batch_size": 8, "patience": 0}
    for min_steps, epochs in ((0, 2), (20, 10), (1000, 50)):
        seen.clear()
        model = TrialModel(_Flat(), task.build_head(16, 3, {"dropout": 0.0}))
        result = fine_tune(model, task, {"features": train[0]}, train[1], {"features": val[0]},
                           val[1], {**params, "min_steps": min_steps}, METRICS, "accuracy", True,
                           torch.device("cpu"), seed=0, callbacks=[Count()])
        assert result.epochs_planned == result.epochs_run == epochs   # 50: the cap
        assert result.steps == 2 * epochs and seen == [2 * e for e in range(1, epochs + 1)]
    assert planned_epochs(5, 100, 150) == 5          # enough steps already: the searched epochs


def test_early_stopping_stops_and_keeps_the_best_epoch():
    train, val = blobs(4, 1), blobs(4, 2)
    task = ClassificationTask()
    scripted = iter([0.5, 0.9, 0.6, 0.6, 0.9, 1.0, 1.0, 1.0])
    metrics = {"scripted": Metric("scripted", lambda y, p, pr: next(scripted))}
    states = {}

    class Snapshot(TrainerCallback):
        def on_epoch_end(self, state):
            states[state.epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}

    model = TrialModel(_Flat(), task.build_head(16, 3, {"dropout": 0.0}))
    params = {**SGD, "strategy": "full", "learning_rate": 1e-2, "epochs": 8, "batch_size": 4,
              "patience": 2}
    result = fine_tune(model, task, {"features": train[0]}, train[1], {"features": val[0]}, val[1],
                       params, metrics, "scripted", True, torch.device("cpu"), seed=0,
                       callbacks=[Snapshot()])
    assert result.best_epoch == 2 and result.epochs_run == 4 and len(result.history) == 4
    assert result.best_metrics["scripted"] == 0.9
    for k, v in result.best_state.items():
        assert torch.equal(v, states[2][k])
    assert not torch.equal(result.best_state["head.linear.weight"], states[4]["head.linear.weight"])


def test_label_efficiency_budgets_get_a_strategy_and_length_that_fit():
    from automl_pt.efficiency import PROBE_PER_CLASS, budget_params

    base = {"backbone": "b", "strategy": "full", "epochs": 3, "batch_size": 32, "min_steps": 0}
    tiny = budget_params(base, "pretrained", 4)
    assert [p["strategy"] for p in tiny] == ["linear_probe"]
    # single-label classification also tries SetFit-style tuning there, with its known-good settings
    pairs = budget_params(base, "continued", 4, setfit=True)
    assert [p["strategy"] for p in pairs] == ["linear_probe", "setfit"]
    assert pairs[1]["setfit_pairs"] == 20 and pairs[1]["learning_rate"] == 2e-5
    assert pairs[1]["init"] == "continued"
    assert [p["strategy"] for p in budget_params(base, "continued", "all", setfit=True)] == \
        ["full", "linear_probe"]
    assert [p["strategy"] for p in budget_params(base, "random", 4, setfit=True)] == ["full"]
    larger = budget_params(base, "continued", PROBE_PER_CLASS + 1)
    assert [p["strategy"] for p in larger] == ["full", "linear_probe"]
    assert larger[0]["min_steps"] == 150 and larger[0]["patience"] == 3
    assert larger[0]["init"] == "continued"
    rand = budget_params(base, "random", 4)
    assert [p["strategy"] for p in rand] == ["full"] and rand[0]["min_steps"] == 150
    # what the caller set explicitly (--param) is kept as given
    kept = budget_params({**base, "min_steps": 10}, "pretrained", "all", fixed=["min_steps"])
    assert kept[0]["min_steps"] == 10 and kept[0]["strategy"] == "full"
    only = budget_params(base, "pretrained", 2, fixed=["strategy"])
    assert [p["strategy"] for p in only] == ["full"] and only[0]["min_steps"] == 150
    as_given = budget_params({**base, "epochs": 8}, "random", 2, fixed=["strategy", "epochs"])
    assert as_given[0]["min_steps"] == 0 and as_given[0]["epochs"] == 8


def test_a_long_first_epoch_is_checked_part_way_once(monkeypatch):
    from automl_pt.train import training

    monkeypatch.setattr(training, "CHECK_MIN_EXAMPLES", 1000)
    task = ClassificationTask()
    checks, epochs = [], []

    class Watch(TrainerCallback):
        def on_check(self, state):
            checks.append((state.epoch, state.samples_seen, dict(state.check_metrics)))

        def on_epoch_end(self, state):
            epochs.append(state.samples_seen)

    params = {**SGD, "strategy": "full", "epochs": 2, "batch_size": 32, "patience": 0, "min_steps": 0}
    for per_class, expected in ((500, 1), (100, 0)):            # 1500 examples: checked; 300: not
        checks.clear(), epochs.clear()
        model = TrialModel(_Flat(), task.build_head(16, 3, {"dropout": 0.0}))
        fine_tune(model, task, {"features": blobs(per_class, 1)[0]}, blobs(per_class, 1)[1],
                  {"features": blobs(4, 2)[0]}, blobs(4, 2)[1], params, METRICS, "accuracy", True,
                  torch.device("cpu"), seed=0, callbacks=[Watch()])
        assert len(checks) == expected and len(epochs) == 2
    # (the last loop ran the small data; run the large one again to look at the check)
    checks.clear(), epochs.clear()
    model = TrialModel(_Flat(), task.build_head(16, 3, {"dropout": 0.0}))
    fine_tune(model, task, {"features": blobs(500, 1)[0]}, blobs(500, 1)[1], {"features": blobs(4, 2)[0]},
              blobs(4, 2)[1], params, METRICS, "accuracy", True, torch.device("cpu"), seed=0,
              callbacks=[Watch()])
    (epoch, seen, values), = checks
    assert epoch == 1 and 375 <= seen < 375 + 32 and 0.0 <= values["accuracy"] <= 1.0

    class Stop(TrainerCallback):
        def on_check(self, state):
            raise optuna.TrialPruned("behind")

    model = TrialModel(_Flat(), task.build_head(16, 3, {"dropout": 0.0}))
    with pytest.raises(optuna.TrialPruned):     # stopping at the check ends training there
        fine_tune(model, task, {"features": blobs(500, 1)[0]}, blobs(500, 1)[1],
                  {"features": blobs(4, 2)[0]}, blobs(4, 2)[1], params, METRICS, "accuracy", True,
                  torch.device("cpu"), seed=0, callbacks=[Stop(), Watch()])
    assert epochs == [1500, 3000]                # only the earlier, unstopped run finished epochs


def test_the_part_way_check_prunes_a_trial_behind_its_strategy():
    from types import SimpleNamespace

    from automl_pt.engine.pruning import StrategyMedianPruner
    from automl_pt.engine.trial import _EpochRecorder
    from automl_pt.train.training import TrainState

    study = optuna.create_study(direction="maximize", pruner=StrategyMedianPruner())
    dist = {"strategy": optuna.distributions.CategoricalDistribution(["full"])}
    for value in (0.8, 0.9):      # two finished full fine-tunes, checked part-way at 0.8 and 0.9
        study.add_trial(optuna.trial.create_trial(params={"strategy": "full"}, distributions=dist,
                                                  value=value, intermediate_values={0: value, 1: value}))

    def check(value, pruner="auto"):
        trial = study.ask()
        trial.suggest_categorical("strategy", ["full"])
        runner = SimpleNamespace(config=SimpleNamespace(search=SimpleNamespace(pruner=pruner)))
        state = TrainState(check_metrics={"accuracy": value})
        try:
            _EpochRecorder(runner, trial, "accuracy").on_check(state)
        except optuna.TrialPruned:
            return "pruned", study._storage.get_trial(trial._trial_id).intermediate_values
        return "kept", study._storage.get_trial(trial._trial_id).intermediate_values

    assert check(0.5) == ("pruned", {0: 0.5})          # below the median of its strategy
    assert check(0.95) == ("kept", {0: 0.95})
    assert check(0.5, pruner="hyperband") == ("kept", {})   # its rungs are whole epochs: not told


@pytest.mark.parametrize("workers", ["inline", "processes"])
def test_a_probe_that_would_repeat_an_earlier_one_is_skipped_and_not_counted(
        tmp_path, tiny_bert, topic_data, text_host, workers):
    # only linear_probe to draw: every draw after the first fits the same closed-form probe
    space = 'strategy = ["linear_probe"]\nepochs = { low = 1, high = 2 }\nbatch_size = [8]'
    resources = 'workers = "inline"' if workers == "inline" else ""
    path = study_toml(tmp_path, tiny_bert, trials=2, space=space, resources=resources)
    results = Study.from_config(path, host=text_host).run(progress=False)
    trials = _optuna(tmp_path / "run").get_trials()
    assert trials[0].state == optuna.trial.TrialState.COMPLETE and "probe_l2" in trials[0].user_attrs
    skipped = trials[1:]
    # up to `trials` duplicates are forgiven, then each counts: 1 probe + 2 forgiven + 1 counted
    assert len(skipped) == 3
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in skipped)
    assert all(t.user_attrs["duplicate_of"] == 0 for t in skipped)
    assert all("probe_l2" not in t.user_attrs for t in skipped)   # nothing was fitted again
    board = results.trials()
    assert board.loc[board["number"] > 0, "state_reason"].tolist() == ["duplicate"] * 3
    assert json.loads((tmp_path / "run" / "best" / "automl_pt.json").read_text())["trial"] == 0


def test_what_makes_two_probe_trials_the_same():
    from types import SimpleNamespace as NS

    from automl_pt.engine.seeding import counted_trials, duplicate_probe

    def trial(number, state="COMPLETE", **params):
        return NS(number=number, state=NS(name=state), user_attrs={},
                  params={"strategy": "linear_probe", "backbone": "a", **params})

    done = [trial(0, learning_rate=1e-3, epochs=1), trial(1, "FAIL", backbone="b"),
            trial(2, "RUNNING", image_size=96)]
    probe = {"strategy": "linear_probe", "backbone": "a"}
    # training-only parameters do not change the probe; its features' parameters do
    assert duplicate_probe(done, {**probe, "learning_rate": 3e-4, "epochs": 4, "dropout": 0.2}, 5) == 0
    assert duplicate_probe(done, {**probe, "backbone": "b"}, 5) is None      # only a failed one
    assert duplicate_probe(done, {**probe, "image_size": 96}, 5) is None     # still running
    assert duplicate_probe(done, {**probe, "pooling": "attention"}, 5) is None
    assert duplicate_probe(done, {**probe, "init": "continued"}, 5) is None
    assert duplicate_probe(done, {"strategy": "full", "backbone": "a"}, 5) is None
    assert duplicate_probe(done, probe, 0) is None                           # itself
    pruned = [trial(i, "PRUNED") for i in range(1, 6)]
    for t in pruned:
        t.user_attrs["duplicate_of"] = 0
    assert counted_trials(done[:1] + pruned[:2], 4) == 1
    assert counted_trials(done[:1] + pruned, 4) == 2                         # 5 > 4 forgiven
    assert counted_trials(done[:1] + pruned, None) == 6


def test_trials_that_tie_on_the_metric_rank_by_validation_loss(tmp_path):
    """Accuracy on a small validation split often ties (the keyword quickstart's probe and its
    fine-tuned trial both classify 178 of 180 clips; validation log loss 0.265 vs 0.128, test
    accuracy 0.956 vs 0.983): the best trial, the export and the leaderboard take the lower
    validation loss; a trial without one comes after those with one, then the earliest."""
    import pandas as pd

    dist = {"strategy": optuna.distributions.CategoricalDistribution(["linear_probe", "full"])}
    study = optuna.create_study(direction="maximize")
    for value, loss, strategy in ((0.9, 0.30, "linear_probe"), (0.9, 0.12, "full"), (0.8, 0.01, "full"),
                                  (0.9, None, "full")):
        study.add_trial(optuna.trial.create_trial(
            value=value, params={"strategy": strategy}, distributions=dist,
            user_attrs={} if loss is None else {"validation_loss": loss}))
    assert study.best_trial.number == 0           # Optuna alone keeps the first of a tie
    assert best_trial(study).number == 1
    results = Results("s", tmp_path, "accuracy", "maximize", trials_frame(study, "s"), pd.DataFrame(), {})
    assert list(results.leaderboard()["trial"]) == [1, 0, 3, 2]
    lone = optuna.create_study(direction="minimize")
    for value in (0.5, 0.5):
        lone.add_trial(optuna.trial.create_trial(value=value, params={"strategy": "full"},
                                                 distributions=dist))
    assert best_trial(lone).number == 0          # no losses: the earliest


def test_validation_loss_is_the_tasks_own_cross_entropy():
    from automl_pt.tasks import MultilabelTask, RegressionTask

    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert ClassificationTask().validation_loss(np.array([0, 1]), probs) == pytest.approx(
        -(np.log(0.9) + np.log(0.8)) / 2)
    assert ClassificationTask().validation_loss(np.array([1, 1]), probs) > 1.0
    multi = MultilabelTask("m").validation_loss(np.array([[1, 0], [0, 1]]), probs)
    assert multi == pytest.approx(-(np.log(0.9) * 2 + np.log(0.8) * 2) / 4)
    assert RegressionTask("r").validation_loss(np.array([1.0]), None) is None
