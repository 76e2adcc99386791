"""Faults are contained: each behaviour is tested with real worker processes, real signals and
the real Optuna / DuckDB files. Faults are injected by tests/support/fault_plugin.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import optuna
import pytest

from tests.conftest import study_toml

SUPPORT = Path(__file__).parent / "support"


def fault_study(tmp_path, tiny_bert, trials=3, resources="", extra="", space=None):
    space = space or 'strategy = ["full"]\nepochs = 2\nbatch_size = [8]'
    return study_toml(tmp_path, tiny_bert, trials=trials, space=space,
                      study='plugins = ["fault_plugin"]\nmax_failures = 3', resources=resources,
                      extra=extra)


def env_for(tmp_path, fault=""):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]),
           "AUTOML_PT_FAULT": fault, "AUTOML_PT_FAULT_DIR": str(tmp_path / "faults")}
    return env


def run_cli(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "automl_pt.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def db_trials(run_dir):
    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM trials ORDER BY number").df()
    finally:
        con.close()


@pytest.fixture
def faults(monkeypatch, tmp_path):
    """In-process drivers spawn workers that inherit os.environ and sys.path."""
    monkeypatch.syspath_prepend(str(SUPPORT))

    def set_fault(spec):
        monkeypatch.setenv("AUTOML_PT_FAULT", spec)
        monkeypatch.setenv("AUTOML_PT_FAULT_DIR", str(tmp_path / "faults"))
    yield set_fault
    sys.modules.pop("fault_plugin", None)


def test_exception_fails_one_trial_with_traceback_and_study_goes_on(tmp_path, tiny_bert, topic_data, faults):
    from automl_pt import Study

    faults("raise@2")
    results = Study.from_config(fault_study(tmp_path, tiny_bert)).run(progress=False)
    trials = db_trials(tmp_path / "run")
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) == 1 and failed.iloc[0]["state_reason"] == "error"
    assert "ValueError: injected failure" in failed.iloc[0]["error"]
    assert "Traceback" in failed.iloc[0]["traceback"] and "fault_plugin.py" in failed.iloc[0]["traceback"]
    assert (trials["state"] == "COMPLETE").sum() == 3      # the study still reached its target
    assert results.best_model_dir.joinpath("automl_pt.json").is_file()


def test_consecutive_failures_stop_the_study(tmp_path, tiny_bert, topic_data, faults):
    from automl_pt import AutomlError, Study

    faults("oom-always")
    with pytest.raises(AutomlError, match="stopped after 3 consecutive failed trials"):
        Study.from_config(fault_study(tmp_path, tiny_bert, trials=5)).run(progress=False)
    trials = db_trials(tmp_path / "run")
    assert list(trials["state"]) == ["FAIL"] * 3
    # OOM down to the floor is recorded as such, distinct from other errors
    assert set(trials["state_reason"]) == {"oom"}
    assert (trials["micro_batch_size"] == 1).all() and (trials["oom_retries"] == 3).all()


def test_oom_is_retried_in_place_with_half_the_micro_batch(tmp_path, tiny_bert, topic_data, faults):
    from automl_pt import Study

    faults("oom>2")
    Study.from_config(fault_study(tmp_path, tiny_bert, trials=2)).run(progress=False)
    trials = db_trials(tmp_path / "run")
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE"]
    # batch 8 → 4 → 2: same effective batch, four times the accumulation
    assert list(trials["micro_batch_size"]) == [2, 2] and list(trials["oom_retries"]) == [2, 2]


def test_killed_worker_fails_its_trial_which_is_retried_once(tmp_path, tiny_bert, topic_data, faults):
    from automl_pt import Study

    faults("kill@2")
    Study.from_config(fault_study(tmp_path, tiny_bert, trials=3)).run(progress=False)
    trials = db_trials(tmp_path / "run").set_index("number")
    dead = trials[trials["state"] == "FAIL"]
    assert len(dead) == 1 and dead.iloc[0]["state_reason"] == "worker_died"
    assert "signal 9" in dead.iloc[0]["error"]
    retry = trials[trials["retry_of"] == dead.index[0]]
    assert len(retry) == 1 and retry.iloc[0]["state"] == "COMPLETE"
    assert json.loads(retry.iloc[0]["params"]) == json.loads(dead.iloc[0]["params"])
    assert (trials["state"] == "COMPLETE").sum() == 3
    assert trials.index.is_unique


def test_hung_trial_is_killed_after_trial_timeout(tmp_path, tiny_bert, topic_data, faults):
    from automl_pt import Study

    faults("hang@1")
    path = fault_study(tmp_path, tiny_bert, trials=1, resources='trial_timeout = "20s"')
    Study.from_config(path).run(progress=False)
    trials = db_trials(tmp_path / "run")
    assert trials.iloc[0]["state"] == "FAIL" and trials.iloc[0]["state_reason"] == "timeout"
    assert (trials["retry_of"] == 0).sum() == 0           # a hang is not retried
    assert (trials["state"] == "COMPLETE").sum() == 1


def test_two_cpu_slots_run_trials_at_once_and_memory_returns(tmp_path, tiny_bert, topic_data, faults):
    from automl_pt import Study

    faults("slow")
    path = fault_study(tmp_path, tiny_bert, trials=4, resources="trials_per_device = 2")
    Study.from_config(path).run(progress=False)
    trials = db_trials(tmp_path / "run")
    assert (trials["state"] == "COMPLETE").sum() == 4 and len(trials) == 4
    spans = sorted(zip(trials["datetime_start"], trials["datetime_complete"]))
    assert any(b_start < a_end for (a_start, a_end), (b_start, b_end) in zip(spans, spans[1:])), \
        "no two trials overlapped in time"
    pids = {pid for pid in (tmp_path / "faults").glob("start-*")}
    assert len({p.read_text() for p in pids}) == 2        # two worker processes
    from automl_pt.core.devices import available_cores

    share = max(1, available_cores() // 2)
    assert (trials["threads"] == share).all()   # cores split fairly
    storage = f"sqlite:///{tmp_path / 'run' / 'optuna.db'}"
    import optuna

    ostudy = optuna.load_study(study_name=trials["study"].iloc[0], storage=storage)
    assert [t.user_attrs["tokenizer_threads"] for t in ostudy.trials] == [share] * 4  # and tokenizers
    # the workers' fitted input size reached the driver's study.json
    meta = json.loads((tmp_path / "run" / "study.json").read_text())
    assert list(meta["input_sizes"].values())[0].startswith("max_length ")
    # After the first trial of each worker (which fills its caches) memory stays flat.
    grown = (trials["memory_after_mb"] - trials["memory_before_mb"]).iloc[2:]
    assert (grown < 150).all(), grown.tolist()


def test_sigterm_stops_workers_and_the_same_command_resumes(tmp_path, tiny_bert, topic_data):
    path = fault_study(tmp_path, tiny_bert, trials=3)
    env = env_for(tmp_path, "slow")
    proc = subprocess.Popen([sys.executable, "-m", "automl_pt.cli", "run", str(path), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(list((tmp_path / "faults").glob("start-*"))) >= 2, 240)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    trials = db_trials(tmp_path / "run")                  # DuckDB is readable and consistent
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'run' / 'optuna.db'}")
    ostudy = optuna.load_study(study_name="tiny", storage=storage)
    assert len(trials) == len(ostudy.trials)
    interrupted = trials[trials["state_reason"] == "interrupted"]
    assert len(interrupted) == 1
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in ostudy.trials)

    again = run_cli(["run", str(path), "--quiet"], env_for(tmp_path, ""))
    assert again.returncode == 0, again.stderr
    trials = db_trials(tmp_path / "run")
    assert (trials["state"] == "COMPLETE").sum() == 3 and trials["number"].is_unique
    assert (trials["retry_of"] == interrupted.iloc[0]["number"]).sum() == 1


def test_sigkill_of_the_driver_resumes_without_losing_or_duplicating(tmp_path, tiny_bert, topic_data):
    path = fault_study(tmp_path, tiny_bert, trials=3)
    proc = subprocess.Popen([sys.executable, "-m", "automl_pt.cli", "run", str(path), "--quiet"],
                            env=env_for(tmp_path, "slow"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # wait until one trial has completed and the second is running
    _wait_for(lambda: len(list((tmp_path / "faults").glob("start-*"))) >= 2, 240)
    completed_before = _completed(tmp_path)
    assert completed_before
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _wait_for(lambda: not _driver_or_workers_alive(tmp_path), 30)   # workers exit with their driver
    again = run_cli(["run", str(path), "--quiet"], env_for(tmp_path, ""))
    assert again.returncode == 0, again.stderr
    trials = db_trials(tmp_path / "run").set_index("number")
    assert trials.index.is_unique and (trials["state"] == "COMPLETE").sum() == 3
    for number, value in completed_before.items():       # nothing completed was lost or changed
        assert trials.loc[number, "value"] == value
    orphan = trials[trials["state_reason"] == "orphaned"]
    assert len(orphan) == 1 and (trials["retry_of"] == orphan.index[0]).sum() == 1


def test_results_never_hit_a_lock_while_the_driver_runs(tmp_path, tiny_bert, topic_data):
    path = fault_study(tmp_path, tiny_bert, trials=3)
    proc = subprocess.Popen([sys.executable, "-m", "automl_pt.cli", "run", str(path), "--quiet"],
                            env=env_for(tmp_path, "slow"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = set()
    try:
        while proc.poll() is None:
            if (tmp_path / "run" / "study.json").exists():
                out = run_cli(["results", str(tmp_path / "run"), "--format", "json", "--all"], os.environ)
                assert out.returncode == 0, out.stderr
                assert "lock" not in out.stderr.lower()
                seen.add(len(json.loads(out.stdout)))
            time.sleep(1)
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == 0
    assert len(seen) >= 2        # it watched the study grow
    assert len(db_trials(tmp_path / "run")) == 3


def test_same_seed_gives_the_same_params_sequence(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study

    space = 'epochs = 1\nbatch_size = [8]'
    params = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "data").symlink_to(tmp_path / "data")
        path = study_toml(folder, tiny_bert, trials=3, space=space)
        results = Study.from_config(path).run(progress=False)
        params.append([json.loads(p) for p in results.trials()["params"]])
        env = json.loads(results.study_row["environment"])
        assert env["packages"]["torch"] and env["python"]
    assert params[0] == params[1]


def _completed(tmp_path) -> dict[int, float]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'run' / 'optuna.db'}")
    study = optuna.load_study(study_name="tiny", storage=storage)
    return {t.number: t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}


def _driver_or_workers_alive(tmp_path) -> bool:
    for start in (tmp_path / "faults").glob("start-*"):
        try:
            os.kill(int(start.read_text()), 0)
            return True
        except (ProcessLookupError, ValueError):
            continue
    return False


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")
