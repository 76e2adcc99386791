"""Checkpoint averaging, soups, ensembles, refit and warm start (automl_pt.engine.soups, automl_pt.engine.finish, automl_pt.engine.warmstart)."""

from __future__ import annotations

import hashlib
import json
import warnings

import duckdb
import optuna
import pytest
import torch

import automl_pt
from automl_pt import ConfigError, Study
from automl_pt.errors import DataWarning
from automl_pt.engine.soups import average_states, greedy_soup, uniform_soup
from automl_pt.train.training import outranks
from tests.conftest import study_toml


# -- averaging ------------------------------------------------------------------------------
def test_uniform_average_of_identical_states_is_the_state():
    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g).half(),
             "steps": torch.tensor(7), "ids": torch.arange(5)}
    out = average_states([state, {k: v.clone() for k, v in state.items()}, state])
    assert out.keys() == state.keys()
    for k, v in state.items():
        assert out[k].dtype == v.dtype
        assert torch.equal(out[k], v), k
    mixed = average_states([{"w": torch.zeros(2), "n": torch.tensor(3)},
                            {"w": torch.ones(2), "n": torch.tensor(9)}])
    assert torch.equal(mixed["w"], torch.full((2,), 0.5)) and int(mixed["n"]) == 3  # buffers: first's
    with pytest.raises(ValueError, match="names or shapes"):
        average_states([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}])


def _scorer(target: torch.Tensor):
    """Validation "accuracy" of a state: higher the closer its weights are to ``target``; no loss."""
    calls = []

    def score(state):
        calls.append(state)
        return {"accuracy": float(-torch.dist(state["w"], target))}, None
    return score, calls


def test_greedy_soup_adds_only_what_improves_and_is_never_worse_than_its_first_ingredient():
    target = torch.zeros(3)
    score, calls = _scorer(target)
    a = {"w": torch.tensor([1.0, 1.0, 0.0])}
    b = {"w": torch.tensor([-1.0, -1.0, 0.0])}      # averaging a and b lands on the target
    c = {"w": torch.tensor([9.0, 9.0, 9.0])}        # far away: would make the average worse
    soup = greedy_soup([("a", a, score(a)), ("c", c, None), ("b", b, None)], score, "accuracy", True)
    assert soup.members == ["a", "b"] and soup.tried == ["a", "c", "b"]
    assert torch.allclose(soup.state["w"], target)
    assert soup.metrics["accuracy"] == pytest.approx(0.0)
    assert soup.metrics["accuracy"] > score(a)[0]["accuracy"]
    # random ingredients, either direction: never worse than the first on validation
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        states = [{"w": torch.randn(3, generator=g) * (i + 1)} for i in range(4)]
        maximize = trial % 2 == 0
        sign = 1 if maximize else -1
        sc = lambda s: ({"m": sign * float(-torch.dist(s["w"], target))}, None)   # noqa: E731
        soup = greedy_soup([(i, s, None) for i, s in enumerate(states)], sc, "m", maximize)
        first = sc(states[0])[0]["m"]
        assert (soup.metrics["m"] >= first) if maximize else (soup.metrics["m"] <= first)
        assert soup.metrics == sc(soup.state)[0]


def test_greedy_soup_is_the_first_ingredient_when_nothing_helps():
    target = torch.zeros(2)
    score, calls = _scorer(target)
    first = {"w": torch.zeros(2)}
    others = [{"w": torch.tensor([3.0, 0.0])}, {"w": torch.tensor([0.0, -2.0])}]
    known = score(first)
    calls.clear()
    soup = greedy_soup([(0, first, known), (1, others[0], None), (2, others[1], None)],
                       score, "accuracy", True)
    assert soup.members == [0]
    assert soup.state is first and (soup.metrics, soup.loss) == known
    assert len(calls) == 2            # each candidate average scored once; the first not again
    # an incompatible ingredient (another architecture) is skipped, not averaged
    soup = greedy_soup([(0, first, known), (1, {"w": torch.zeros(5)}, None)], score, "accuracy", True)
    assert soup.members == [0] and soup.tried == [0]
    uni = uniform_soup([(0, first, known), (1, {"w": torch.tensor([2.0, 2.0])}, None)], score)
    assert uni.members == [0, 1] and torch.equal(uni.state["w"], torch.ones(2))


def test_outranks_orders_by_the_metric_then_the_lower_validation_loss():
    assert outranks(0.9, 5.0, 0.8, 0.1, True) and not outranks(0.8, 0.1, 0.9, 5.0, True)
    assert outranks(0.1, 5.0, 0.2, 0.1, False)                 # minimised metric
    assert outranks(0.9, 0.2, 0.9, 0.3, True) and not outranks(0.9, 0.3, 0.9, 0.2, True)
    assert not outranks(0.9, 0.2, 0.9, 0.2, True)             # an exact tie: the incumbent stays
    assert outranks(0.9, 0.2, 0.9, None, True) and not outranks(0.9, None, 0.9, 0.2, True)
    assert not outranks(0.9, float("nan"), 0.9, 0.2, True) and outranks(0.9, 0.2, 0.9, float("nan"), True)


def test_greedy_soup_takes_a_tie_on_the_metric_only_with_a_lower_loss():
    """On a saturated validation split the soup can only tie on accuracy: the validation loss
    decides, as it decides between tied trials."""
    loss_of = {1.0: 0.30, 2.0: 0.50, 1.5: 0.20, 3.0: 0.40}   # w of the (averaged) state -> loss

    def score(state):
        return {"accuracy": 0.98}, loss_of[float(state["w"][0])]
    a, b, c = ({"w": torch.tensor([v])} for v in (1.0, 2.0, 5.0))
    soup = greedy_soup([("a", a, score(a)), ("b", b, None)], score, "accuracy", True)
    assert soup.members == ["a", "b"] and soup.loss == 0.20 and float(soup.state["w"][0]) == 1.5
    soup = greedy_soup([("a", a, score(a)), ("c", c, None)], score, "accuracy", True)   # average 3.0
    assert soup.members == ["a"] and soup.loss == 0.30 and soup.tried == ["a", "c"]


def test_fine_tune_breaks_ties_between_epochs_by_the_lower_validation_loss(text_host):
    """Separable data: accuracy reaches 1.0 early and stays; the kept epoch is the one of lowest
    validation loss among the perfect ones, not the first perfect one."""
    from automl_pt.train.training import fine_tune
    from automl_pt.model import ClassificationTask, TrialModel

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    feats = {"features": torch.randn(40, 4, generator=g) * 0.3 + labels[:, None].float() * 4 - 2}
    task = ClassificationTask()
    model = TrialModel(torch.nn.Identity(), task.build_head(4, 2, {}))
    metrics = {"accuracy": text_host.registry.metrics["accuracy"]}
    params = {"strategy": "linear_probe", "epochs": 6, "batch_size": 8, "learning_rate": 0.05}
    result = fine_tune(model, task, feats, labels.numpy(), feats, labels.numpy(), params, metrics,
                       "accuracy", True, torch.device("cpu"), 0, keep_states=2)
    perfect = [h for h in result.history if h["val_accuracy"] == 1.0]
    assert len(perfect) >= 3                                   # the tie this test is about
    lowest = min(perfect, key=lambda h: h["validation_loss"])
    assert lowest["epoch"] != perfect[0]["epoch"]              # the first perfect epoch is not it
    assert result.best_epoch == lowest["epoch"]
    assert result.validation_loss == pytest.approx(lowest["validation_loss"])
    assert [e for e, *_ in result.top_states] == [h["epoch"] for h in sorted(
        perfect, key=lambda h: h["validation_loss"])[:2]]


def test_fine_tune_keeps_the_best_epochs_best_first(tiny_bert, topic_data, text_host):
    """``keep_states`` holds the top epochs (best first; the first is ``best_state``)."""
    from automl_pt.train.training import fine_tune
    from automl_pt.model import ClassificationTask, TrialModel

    torch.manual_seed(0)
    feats = {"features": torch.randn(30, 8)}
    labels = torch.randint(0, 3, (30,)).numpy()
    task = ClassificationTask()
    model = TrialModel(torch.nn.Identity(), task.build_head(8, 3, {}))
    metrics = {"accuracy": text_host.registry.metrics["accuracy"]}
    params = {"strategy": "linear_probe", "epochs": 5, "batch_size": 8, "learning_rate": 0.05}
    result = fine_tune(model, task, feats, labels, feats, labels, params, metrics, "accuracy", True,
                       torch.device("cpu"), 0, keep_states=3)
    ranked = [(m["accuracy"], -loss) for _, m, _, loss in result.top_states]
    assert len(result.top_states) == 3 and ranked == sorted(ranked, reverse=True)
    epochs = {h["epoch"]: (h["val_accuracy"], -h["validation_loss"]) for h in result.history}
    assert all(epochs[e] == (m["accuracy"], -loss) for e, m, _, loss in result.top_states)
    assert result.top_states[0][0] == result.best_epoch and result.top_states[0][2] is result.best_state
    assert sorted(epochs.values(), reverse=True)[:3] == ranked


# -- end to end -----------------------------------------------------------------------------
def _derived(run_dir):
    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM derived_models ORDER BY kind").df()
    finally:
        con.close()


def test_study_soups_and_ensemble_are_leaderboard_rows_and_best_is_never_worse(
        tmp_path, tiny_bert, topic_data, text_host, capsys):
    path = study_toml(tmp_path, tiny_bert, trials=3, space='epochs = 3\nbatch_size = [8]',
                      resources='workers = "inline"')
    text = path.read_text().replace('pruner = "none"', 'pruner = "none"\nsoup = "greedy"\nensemble = 2')
    path.write_text(text)
    results = Study.from_config(path, host=text_host).run(progress=False)
    run_dir = tmp_path / "run"
    board = results.leaderboard()
    assert set(board["kind"]) >= {"trial", "ensemble"}
    assert (board["kind"] == "trial").sum() == 3
    assert board["accuracy"].is_monotonic_decreasing and list(board["rank"]) == list(range(1, len(board) + 1))
    derived = _derived(run_dir)
    assert set(derived["kind"]) >= {"trial", "ensemble"}
    ens = derived[derived["kind"] == "ensemble"].iloc[0]
    assert json.loads(ens["members"]) == [int(t) for t in board[board["kind"] == "trial"]["trial"][:2]]
    details = json.loads(ens["details"])
    best_trial = results.study_row["best_trial"]
    best_value = results.study_row["best_value"]
    assert details["validation_gain"] == pytest.approx(ens["value"] - best_value)
    assert ens["test_value"] is not None and details["test_gain"] is not None
    # every trial's epoch soup was measured; the best trial's (when it averages epochs) is a row
    ostudy = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    for t in ostudy.trials:
        if t.params["strategy"] == "linear_probe":   # fitted in closed form: one 'epoch', no soup
            continue
        soup = t.user_attrs["epoch_soup"]
        assert soup["epochs"][0] == t.user_attrs["best_epoch"]
        assert soup["metrics"]["accuracy"] >= t.value
    # exactly one model is exported, and it is never worse than the best trial on validation
    assert derived["exported"].sum() == 1
    exported = derived[derived["exported"]].iloc[0]
    assert exported["kind"] in ("trial", "soup") and exported["value"] >= best_value
    metrics = json.loads((run_dir / "best" / "metrics.json").read_text())
    assert metrics["objective"]["accuracy"] == pytest.approx(exported["value"])
    assert metrics["test"]["accuracy"] == pytest.approx(exported["test_value"])
    # the export is the row that ranks first by (validation metric, then lower validation loss)
    losses = {i: json.loads(row["details"]).get("validation_loss") for i, row in derived.iterrows()}
    best_loss = ostudy.trials[best_trial].user_attrs["validation_loss"]
    for i, row in derived.iterrows():
        if row["kind"] == "trial":
            losses[i] = best_loss
    candidates = [i for i, row in derived.iterrows() if row["kind"] in ("trial", "soup")]
    top = exported.name
    assert not any(outranks(derived.loc[i, "value"], losses[i], exported["value"], losses[top], True)
                   for i in candidates if i != top)
    if exported["kind"] == "soup":
        assert outranks(exported["value"], losses[top], best_value, best_loss, True)
        assert metrics["source"]["kind"] == "soup"
    exported_rank = board[board["exported"]].index[0]
    assert (board["accuracy"].iloc[:exported_rank] > exported["value"]).all()   # ties: it comes first
    manifest = json.loads((run_dir / "best" / "automl_pt.json").read_text())
    assert manifest["trial"] == best_trial
    # the exported model reproduces the recorded test score
    import pandas as pd

    test = pd.read_csv(topic_data["test"])
    pred = automl_pt.load(run_dir / "best").predict(test["text"].tolist())
    assert (pred.to_frame()["label"] == test["label"]).mean() == pytest.approx(metrics["test"]["accuracy"])
    # after the soups only the best trial keeps its weights
    kept = sorted(p.parent.name for p in (run_dir / "trials").glob("*/*.safetensors"))
    assert set(kept) <= {f"{best_trial:05d}"}
    # the command line shows the kinds
    from automl_pt.cli import main

    assert main(["results", str(run_dir), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "kind" in out.splitlines()[0] and ",ensemble," in out


def test_soup_none_keeps_the_plain_leaderboard(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert, trials=1, space='epochs = 2\nbatch_size = [8]',
                      resources='workers = "inline"')
    path.write_text(path.read_text().replace('pruner = "none"', 'pruner = "none"\nsoup = "none"'))
    results = Study.from_config(path, host=text_host).run(progress=False)
    board = results.leaderboard()
    assert list(board["kind"]) == ["trial"]
    assert "epoch_soup" not in results.optuna_study().trials[0].user_attrs
    assert len(_derived(tmp_path / "run")) == 0


def test_refit_trains_on_train_and_validation_for_the_best_epoch_and_exports(
        tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert, trials=1, space='epochs = 3\nbatch_size = [8]\nstrategy = ["full"]',
                      resources='workers = "inline"')
    path.write_text(path.read_text().replace('pruner = "none"', 'pruner = "none"\nrefit = true'))
    results = Study.from_config(path, host=text_host).run(progress=False)
    run_dir = tmp_path / "run"
    trial = results.optuna_study().best_trial
    metrics = json.loads((run_dir / "best" / "metrics.json").read_text())
    source = metrics["source"]
    n_train, n_val = 60, 24   # topic_data: 20 and 8 rows per topic
    assert source["kind"] == "refit" and source["epochs"] == trial.user_attrs["best_epoch"]
    assert source["examples"] == n_train + n_val
    assert source["samples_seen"] == (n_train + n_val) * trial.user_attrs["best_epoch"]
    # the search's validation score is kept for the record; the refit model's test is reported
    assert metrics["validation"] == trial.user_attrs["metrics"]
    assert metrics["objective"]["accuracy"] == trial.value
    board = results.leaderboard()
    refit = board[board["kind"] == "refit"].iloc[0]
    assert refit["exported"] and refit["accuracy"] == trial.value
    assert refit["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert not board[board["kind"] == "trial"]["exported"].any()
    assert json.loads((run_dir / "best" / "automl_pt.json").read_text())["source"]["kind"] == "refit"


# -- distillation ---------------------------------------------------------------------------
def test_distill_targets_mix_the_truth_with_the_members_average():
    import numpy as np

    from automl_pt.tasks import ClassificationTask, MultilabelTask, RegressionTask

    task = ClassificationTask()
    a = (None, np.array([[0.8, 0.2, 0.0], [0.1, 0.1, 0.8]]))
    b = (None, np.array([[0.4, 0.6, 0.0], [0.1, 0.3, 0.6]]))
    soft = task.distill_targets(np.array([0, 1]), [a, b], 0.5)
    np.testing.assert_allclose(soft, [[0.8, 0.2, 0.0], [0.05, 0.6, 0.35]], atol=1e-6)
    tensor = task.target_tensor(soft)   # probabilities, not truncated to class indices
    assert tensor.dtype == torch.float32 and torch.allclose(tensor.sum(1), torch.ones(2))
    assert task.target_tensor(np.array([2, 0])).dtype == torch.long
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.5]])
    expected = -(tensor * torch.log_softmax(logits, 1)).sum(1).mean()
    assert task.loss(logits, tensor, {}).item() == pytest.approx(expected.item())

    reg = RegressionTask()
    np.testing.assert_allclose(reg.distill_targets(np.array([1.0, 3.0]), [(np.array([2.0, 2.0]), None),
                                                                           (np.array([4.0, 0.0]), None)], 0.5),
                               [2.0, 2.0])
    multi = MultilabelTask()
    np.testing.assert_allclose(multi.distill_targets(np.array([[1, 0]]), [(None, np.array([[0.6, 0.4]]))], 0.25),
                               [[0.9, 0.1]], atol=1e-6)


def test_distill_trains_the_best_configuration_on_the_ensembles_soft_targets(
        tmp_path, tiny_bert, topic_data, text_host, monkeypatch):
    import numpy as np

    from automl_pt.engine.trial import TrialRunner

    seen = []
    original = TrialRunner._train

    def spy(self, trial, params, seed, micro, train_split=None, keep_last=False):
        if trial is None:
            seen.append((params, np.asarray(train_split.labels)))
        return original(self, trial, params, seed, micro, train_split, keep_last)

    monkeypatch.setattr(TrialRunner, "_train", spy)
    path = study_toml(tmp_path, tiny_bert, trials=3, space='epochs = 2\nbatch_size = [8]\nstrategy = ["full"]',
                      resources='workers = "inline"')
    path.write_text(path.read_text().replace('pruner = "none"', 'pruner = "none"\nensemble = 2\ndistill = true'))
    results = Study.from_config(path, host=text_host).run(progress=False)
    run_dir = tmp_path / "run"
    best = results.optuna_study().best_trial
    # one retraining, of the best configuration, on soft targets: rows of probabilities, and
    # not the one-hot truth (the members' outputs are mixed in)
    assert len(seen) == 1
    params, targets = seen[0]
    assert params == best.params
    assert targets.dtype == np.float32 and targets.shape == (60, 3)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-5)
    assert ((targets > 0.01) & (targets < 0.99)).any() and (targets.max(1) >= 0.5).all()
    derived = _derived(run_dir)
    row = derived[derived["kind"] == "distilled"].iloc[0]
    details = json.loads(row["details"])
    assert details["teacher_weight"] == 0.5 and row["test_value"] is not None
    assert details["validation_gain"] == pytest.approx(row["value"] - best.value)
    assert json.loads(row["members"]) == [int(t) for t in json.loads(derived[derived["kind"] == "ensemble"].iloc[0]["members"])]
    # exported only where it beats the best trial (and the soups) on validation
    assert derived["exported"].sum() == 1
    exported = derived[derived["exported"]].iloc[0]
    assert exported["value"] == derived["value"][derived["kind"] != "ensemble"].max()
    source = json.loads((run_dir / "best" / "metrics.json").read_text()).get("source") or {}
    assert (source.get("kind") == "distilled") == (exported["kind"] == "distilled")
    assert (exported["kind"] == "distilled") == (row["value"] > best.value and row["value"] == exported["value"])


def test_distill_needs_an_ensemble_and_excludes_refit(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert)
    base = path.read_text()
    path.write_text(base.replace('pruner = "none"', 'pruner = "none"\ndistill = true'))
    with pytest.raises(ConfigError, match=r"\[search\] distill: needs an ensemble to learn from"):
        Study.from_config(path, host=text_host)
    path.write_text(base.replace('pruner = "none"', 'pruner = "none"\nensemble = 2\ndistill = true\nrefit = true'))
    with pytest.raises(ConfigError, match=r"\[search\] distill: and refit = true .* choose one"):
        Study.from_config(path, host=text_host)


# -- warm start -----------------------------------------------------------------------------
def _earlier_run(tmp_path, tiny_bert, params_list, values, task="text-classification", name="earlier"):
    """An earlier study's run directory: study.json and an Optuna storage with completed trials."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    url = f"sqlite:///{run_dir / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for params, value in zip(params_list, values):
        dists = {k: (optuna.distributions.CategoricalDistribution([v]) if isinstance(v, str)
                     else optuna.distributions.FloatDistribution(0.0, 10.0)) for k, v in params.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    (run_dir / "study.json").write_text(json.dumps({"study": name, "task": task, "metric": "accuracy",
                                                    "direction": "maximize", "optuna_url": url}))
    return run_dir


def test_warm_start_enqueues_the_earlier_best_first_and_drops_what_does_not_fit(
        tmp_path, tiny_bert, topic_data, text_host):
    best = {"backbone": str(tiny_bert), "learning_rate": 0.002, "strategy": "linear_probe",
            "dropout": 0.05, "unknown_knob": 3.0, "epochs": 9.0}
    earlier = _earlier_run(tmp_path, tiny_bert, [{"backbone": str(tiny_bert), "learning_rate": 0.0005},
                                                  best], [0.5, 0.9])
    digest = hashlib.sha256((earlier / "optuna.db").read_bytes()).hexdigest()
    path = study_toml(tmp_path, tiny_bert, trials=2, space='epochs = { low = 1, high = 2 }\nbatch_size = [8]',
                      resources='workers = "inline"')
    path.write_text(path.read_text().replace('pruner = "none"',
                                             'pruner = "none"\nsoup = "none"\nwarm_start = ["earlier"]'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = Study.from_config(path, host=text_host).run(progress=False)
    # the frozen-feature probe goes first (automl_pt.engine.seeding), then the earlier study's best
    trial = next(t for t in results.optuna_study().trials if t.user_attrs.get("warm_start"))
    for key in ("backbone", "learning_rate", "strategy", "dropout"):
        assert trial.params[key] == best[key], key
    assert trial.params["epochs"] in (1, 2)                      # 9 is outside 1..2: sampled
    assert trial.user_attrs["warm_start"] == str(earlier)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    dropped = [m for m in messages if "warm_start" in m]
    assert len(dropped) == 1 and "unknown_knob=3.0" in dropped[0] and "epochs=9.0" in dropped[0]
    assert "learning_rate" not in dropped[0]
    # the earlier study was only read
    assert hashlib.sha256((earlier / "optuna.db").read_bytes()).hexdigest() == digest


def test_warm_start_auto_finds_the_sibling_run_dirs_of_the_same_task_and_backbones(
        tmp_path, tiny_bert, topic_data, text_host):
    kin = _earlier_run(tmp_path, tiny_bert, [{"backbone": str(tiny_bert), "learning_rate": 0.0007,
                                              "strategy": "linear_probe"}], [0.8], name="kin")
    _earlier_run(tmp_path, tiny_bert, [{"backbone": "other-model", "learning_rate": 0.0003}], [0.9],
                 name="other-backbone")
    _earlier_run(tmp_path, tiny_bert, [{"backbone": str(tiny_bert), "learning_rate": 0.0002}], [0.9],
                 task="image-classification", name="other-task")
    (tmp_path / "a-user-folder").mkdir()
    digest = hashlib.sha256((kin / "optuna.db").read_bytes()).hexdigest()
    path = study_toml(tmp_path, tiny_bert, trials=2, space='epochs = [1]\nbatch_size = [8]',
                      resources='workers = "inline"')
    path.write_text(path.read_text().replace('pruner = "none"',
                                             'pruner = "none"\nsoup = "none"\nwarm_start = "auto"'))
    results = Study.from_config(path, host=text_host).run(progress=False)
    warm = [t for t in results.optuna_study().trials if t.user_attrs.get("warm_start")]
    assert [t.user_attrs["warm_start"] for t in warm] == [str(kin)]
    assert warm[0].params["learning_rate"] == 0.0007
    assert hashlib.sha256((kin / "optuna.db").read_bytes()).hexdigest() == digest
    # the sampler reads the kin's trial as history (the other backbone's and task's: not)
    study = Study.from_config(path, host=text_host)
    assert str(study.optuna_study(study.prepare()).sampler) == \
        "ProbeOnce(WarmHistory(TPESampler, 1 earlier trial from 1 study))"


def test_bad_warm_start_is_a_config_error_naming_file_and_line(tmp_path, tiny_bert, topic_data, text_host):
    (tmp_path / "not-a-run").mkdir()
    _earlier_run(tmp_path, tiny_bert, [{"learning_rate": 0.1}], [0.5], task="image-classification")
    path = study_toml(tmp_path, tiny_bert)
    text = path.read_text().replace('pruner = "none"', 'pruner = "none"\n'
                                    'warm_start = ["missing", "not-a-run", "earlier"]\nsoup = "gredy"\n'
                                    'ensemble = -1')
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("warm_start"))
    with pytest.raises(ConfigError) as info:
        Study.from_config(path, host=text_host)
    problems = info.value.problems
    assert sum(f"study.toml:{line}: [search] warm_start: " in p for p in problems) == 3
    assert any("'missing': no such run directory" in p for p in problems)
    assert any("'not-a-run': not an automl_pt run directory" in p for p in problems)
    assert any("'earlier': study 'earlier' is a image-classification study" in p for p in problems)
    assert any("[search] soup: unknown soup 'gredy' (did you mean 'greedy'?)" in p for p in problems)
    assert any("[search] ensemble: must be 0" in p for p in problems)
    from automl_pt.cli import main

    assert main(["run", str(path)]) == 2


# -- warm start: the earlier trials as the sampler's history --------------------------------
def _near_nine(trial):
    return (trial.suggest_float("x", 0.0, 10.0) - 9.5) ** 2


def _objective_run(tmp_path, name="earlier", direction="minimize", metric="loss", n=30):
    """An earlier run directory whose study minimised ``_near_nine`` with ``n`` random trials."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    url = f"sqlite:///{run_dir / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=url, direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_near_nine, n_trials=n)
    (run_dir / "study.json").write_text(json.dumps({"study": name, "task": "t", "metric": metric,
                                                    "direction": direction, "optuna_url": url}))
    return run_dir


def _history(run_dirs, space, metric="loss", direction="minimize"):
    from types import SimpleNamespace

    from automl_pt.engine.warmstart import sampler_history

    config = SimpleNamespace(search=SimpleNamespace(warm_start=list(run_dirs)))
    prepared = SimpleNamespace(space=space, metric=metric, direction=direction)
    return sampler_history(config, prepared)


@pytest.mark.parametrize("kind", ["tpe", "gp"])
def test_warm_start_sampler_draws_near_the_earlier_optimum_without_adding_trials(tmp_path, kind):
    from statistics import median

    from automl_pt.engine.warmstart import HISTORY_ATTR, with_history
    from automl_pt.registry import Param

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    earlier = _objective_run(tmp_path)
    digest = hashlib.sha256((earlier / "optuna.db").read_bytes()).hexdigest()
    history, sources = _history([earlier], {"x": Param("x", "float", 0.0, 10.0)})
    assert [t.number for t in history] == list(range(30))
    assert sources == [{"run_dir": str(earlier), "study": "earlier", "trials": 30, "left_out": 0}]
    url = f"sqlite:///{tmp_path / 'new.db'}"

    def first_five(warm):
        base = (optuna.samplers.TPESampler(seed=1, n_startup_trials=5) if kind == "tpe"
                else optuna.samplers.GPSampler(seed=1))
        sampler = with_history(base, history, sources) if warm else base
        study = optuna.create_study(study_name=f"warm={warm}", storage=url, direction="minimize",
                                    sampler=sampler)
        study.optimize(_near_nine, n_trials=5)
        return sampler, [t.params["x"] for t in study.trials]

    sampler, warm = first_five(True)
    _, cold = first_five(False)
    assert str(sampler).endswith("30 earlier trials from 1 study)")
    # the earlier optimum is x = 9.5 (the earlier study drew x in 0..10 at random)
    assert 9.0 <= median(warm) <= 10.0, warm
    assert median(cold) < 8.0 and max(cold) - min(cold) > 3.0, cold   # no history: spread out
    # the history is read, never written: this study holds its own 5 trials, numbered from 0
    stored = optuna.load_study(study_name="warm=True", storage=url).get_trials()
    assert [t.number for t in stored] == [0, 1, 2, 3, 4]
    assert not any(HISTORY_ATTR in t.user_attrs for t in stored)
    assert hashlib.sha256((earlier / "optuna.db").read_bytes()).hexdigest() == digest


def test_warm_start_sampler_reads_only_trials_that_fit_this_space_metric_and_direction(tmp_path):
    from automl_pt.engine.warmstart import HISTORY_ATTR, HistoryView, space_distributions
    from automl_pt.registry import Param

    run_dir = tmp_path / "earlier"
    run_dir.mkdir()
    url = f"sqlite:///{run_dir / 'optuna.db'}"
    study = optuna.create_study(study_name="earlier", storage=url, direction="maximize")
    wide = {"x": optuna.distributions.FloatDistribution(0.0, 20.0),
            "n": optuna.distributions.FloatDistribution(0.0, 9.0),
            "opt": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
            "extra": optuna.distributions.FloatDistribution(0.0, 9.0)}
    complete, pruned, failed = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                optuna.trial.TrialState.FAIL)
    rows = [({"x": 1.0, "n": 2.0, "opt": "a"}, complete, {}, {}),           # fits
            ({"x": 12.0, "n": 2.0, "opt": "a"}, complete, {}, {}),          # x outside 0..10
            ({"x": 2.0, "opt": "c"}, complete, {}, {}),                     # not a choice
            ({"x": 3.0, "n": 3.0, "extra": 5.0}, complete, {}, {}),         # extra dropped: fits
            ({"x": 4.0, "n": 1.0}, pruned, {0: 0.3, 1: 0.2}, {}),           # pruned: fits
            ({"x": 5.0}, pruned, {}, {"duplicate_of": 0}),                  # a skipped repeat
            ({"x": 1.25, "n": 2.0}, complete, {}, {}),                      # off the 0.5 step
            ({"x": 2.0, "n": 2.5}, complete, {}, {}),                       # n is an integer
            ({"x": 6.0, "n": 2.0}, failed, {}, {})]                         # not finished
    for i, (params, state, steps, attrs) in enumerate(rows):
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: wide[k] for k in params}, state=state,
            value=float(i) if state == complete else None, intermediate_values=steps,
            user_attrs=attrs))
    (run_dir / "study.json").write_text(json.dumps({"study": "earlier", "task": "t", "metric": "f1",
                                                    "direction": "maximize", "optuna_url": url}))
    space = {"x": Param("x", "float", 0.0, 10.0, step=0.5), "n": Param("n", "int", 1, 4),
             "opt": Param("opt", "categorical", choices=("a", "b")),
             "lr": Param("lr", "float", 1e-4, 1e-2, log=True)}      # searched here, not there
    history, sources = _history([run_dir], space, metric="f1", direction="maximize")
    assert [(t.number, t.params, t.state, t.value) for t in history] == [
        (0, {"x": 1.0, "n": 2, "opt": "a"}, complete, 0.0),
        (1, {"x": 3.0, "n": 3}, complete, 3.0),
        (2, {"x": 4.0, "n": 1}, pruned, None)]
    assert history[2].intermediate_values == {0: 0.3, 1: 0.2}
    dists = space_distributions(space)
    assert all(t.distributions == {k: dists[k] for k in t.params} for t in history)
    assert all(t.user_attrs == {HISTORY_ATTR: str(run_dir)} for t in history)
    assert sources == [{"run_dir": str(run_dir), "study": "earlier", "trials": 3, "left_out": 5}]
    # the sampler's view: the earlier trials first, then this study's own, numbered after them
    own = optuna.create_study(study_name="own", storage=f"sqlite:///{tmp_path / 'own.db'}",
                              direction="maximize")
    own.add_trial(optuna.trial.create_trial(params={"x": 2.0}, distributions={"x": dists["x"]}, value=1.0))
    view = HistoryView(own, history)
    assert [(t.number, t.params["x"]) for t in view.get_trials()] == [(0, 1.0), (1, 3.0), (2, 4.0), (3, 2.0)]
    assert [t.number for t in view._get_trials(deepcopy=False, states=(pruned,), use_cache=True)] == [2]
    assert view.direction == own.direction and view._study_id == own._study_id
    assert [t.number for t in own.get_trials()] == [0]
    # another direction or another metric: nothing, with a warning naming why
    for metric, direction, why in (
            ("f1", "minimize", "it optimised f1 (maximize), this study f1 (minimize)"),
            ("accuracy", "maximize", "it optimised f1 (maximize), this study accuracy (maximize)")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history, sources = _history([run_dir], space, metric=metric, direction=direction)
        assert history == [] and why in sources[0]["skipped"]
        assert [str(w.message) for w in caught if issubclass(w.category, DataWarning)] == [
            f"[search] warm_start: the sampler does not read the trials of study 'earlier' "
            f"({run_dir}): {sources[0]['skipped']}"]


def test_warm_started_study_samples_with_the_earlier_trials_as_history(
        tmp_path, tiny_bert, topic_data, text_host, monkeypatch):
    from automl_pt.engine.seeding import counted_trials
    from automl_pt.engine.warmstart import HISTORY_ATTR, HistoryView

    earlier = _earlier_run(tmp_path, tiny_bert, [
        {"backbone": str(tiny_bert), "learning_rate": 0.0005, "strategy": "linear_probe"},
        {"backbone": str(tiny_bert), "learning_rate": 0.002, "strategy": "linear_probe"},
        {"backbone": str(tiny_bert), "learning_rate": 0.5}], [0.5, 0.9, 0.7])   # 0.5: outside
    seen = []
    original = HistoryView._get_trials

    def spy(self, *args, **kwargs):
        trials = original(self, *args, **kwargs)
        seen.append(sum(HISTORY_ATTR in t.user_attrs for t in trials))
        return trials

    monkeypatch.setattr(HistoryView, "_get_trials", spy)
    path = study_toml(tmp_path, tiny_bert, trials=3, space='epochs = [1]\nbatch_size = [8]',
                      resources='workers = "inline"')
    base = path.read_text()
    path.write_text(base.replace('pruner = "none"', 'pruner = "none"\nsoup = "none"\nknown_good = false\n'
                                 'warm_start = ["earlier"]'))
    study = Study.from_config(path, host=text_host)
    results = study.run(progress=False)
    # the sampler read the two earlier trials that fit; the study holds only its own trials: the
    # probe, the earlier best (a probe again: skipped, it does not count) and two sampled ones
    assert seen and max(seen) == 2
    trials = results.optuna_study().trials
    assert [t.number for t in trials] == [0, 1, 2, 3] and counted_trials(trials, 3) == 3
    assert not any(HISTORY_ATTR in t.user_attrs for t in trials)
    assert trials[1].user_attrs["warm_start"] == str(earlier) and trials[1].user_attrs["duplicate_of"] == 0
    sampler = study.optuna_study(study.prepare()).sampler
    assert str(sampler) == "ProbeOnce(WarmHistory(TPESampler, 2 earlier trials from 1 study))"
    # warm_start_sampler = false: the best configuration is enqueued, the sampler reads nothing
    path.write_text(base.replace('pruner = "none"', 'pruner = "none"\nwarm_start = ["earlier"]\n'
                                 'warm_start_sampler = false'))
    study = Study.from_config(path, host=text_host)
    assert str(study.optuna_study(study.prepare()).sampler) == "ProbeOnce(TPESampler)"


def test_bad_warm_start_sampler_is_a_config_error_naming_the_key(tmp_path, tiny_bert, topic_data, text_host):
    _earlier_run(tmp_path, tiny_bert, [{"learning_rate": 0.1}], [0.5])
    path = study_toml(tmp_path, tiny_bert)
    base = path.read_text()
    for setting, message in (
            ('warm_start = ["earlier"]\nwarm_start_sampler = "yes"', "expected bool, got str 'yes'"),
            ('warm_start_sampler = true', "reads the trials of the [search] warm_start studies"),
            ('warm_start = ["earlier"]\nwarm_start_sampler = true', "the grid sampler walks its grid")):
        text = base.replace('pruner = "none"', f'pruner = "none"\n{setting}')
        if "grid" in message:
            text = text.replace('sampler = "tpe"', 'sampler = "grid"').replace(
                'learning_rate = { low = 1e-4, high = 3e-3, log = true }', 'learning_rate = [1e-3]').replace(
                'epochs = { low = 1, high = 2 }', 'epochs = [1]')
        path.write_text(text)
        line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("warm_start_sampler"))
        with pytest.raises(ConfigError) as info:
            Study.from_config(path, host=text_host)
        assert any(f"study.toml:{line}: [search] warm_start_sampler: " in p and message in p
                   for p in info.value.problems), info.value.problems
