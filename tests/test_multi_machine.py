"""Several machines, one study: standalone workers against a real PostgreSQL server.

Two worker processes stand in for two machines; a third is SIGKILLed mid-trial. The dead trial is
detected by its stale heartbeat, failed, and retried with the same params by a surviving worker.
.ci/run starts the server and sets AUTOML_PT_TEST_POSTGRES (see .ci/postgres).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import duckdb
import optuna
import pytest

from tests.conftest import study_toml
from tests.test_faults import SUPPORT, _wait_for

POSTGRES = os.environ.get("AUTOML_PT_TEST_POSTGRES")


@pytest.fixture
def postgres_url():
    if not POSTGRES:
        if os.environ.get("CI"):
            pytest.fail("AUTOML_PT_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("set AUTOML_PT_TEST_POSTGRES=postgresql://... (bash .ci/postgres prints one)")
    return POSTGRES


def _machine(tmp_path, name, tiny_bert, study_name, url):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "data").symlink_to(tmp_path / "data")
    path = study_toml(folder, tiny_bert, trials=6, space='strategy = ["full"]\nepochs = 2\nbatch_size = [8]',
                      study='plugins = ["fault_plugin"]',
                      extra=f'optuna = "{url}"\nheartbeat_interval = 1\ngrace_period = 4')
    path.write_text(path.read_text().replace('name = "tiny"', f'name = "{study_name}"'))
    return path


def _worker(path, tmp_path, name):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]),
           "AUTOML_PT_FAULT": "slow", "AUTOML_PT_FAULT_DIR": str(tmp_path / f"faults-{name}")}
    return subprocess.Popen([sys.executable, "-m", "automl_pt.cli", "worker", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_workers_on_two_machines_and_one_killed(tmp_path, tiny_bert, topic_data, postgres_url):
    study_name = f"mm-{uuid.uuid4().hex[:8]}"
    paths = {m: _machine(tmp_path, m, tiny_bert, study_name, postgres_url) for m in ("m1", "m2", "m3")}
    doomed = _worker(paths["m3"], tmp_path, "m3")

    def doomed_started() -> bool:
        if doomed.poll() is not None:   # it could not start: show why instead of waiting
            raise AssertionError(f"worker exited with {doomed.returncode}: {doomed.stdout.read()}")
        return (tmp_path / "faults-m3" / "start-1").exists()

    _wait_for(doomed_started, 240)
    survivors = [_worker(paths[m], tmp_path, m) for m in ("m1", "m2")]
    time.sleep(1.5)                                       # mid-trial
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    for proc in survivors:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out

    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    done = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    # each machine stops once the study has its trials; two racing at the end may add one more
    assert 6 <= len(done) <= 7
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    killed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(killed) == 1, [(t.number, t.state) for t in trials]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == killed[0].params
    hosts = {t.user_attrs.get("worker_pid") for t in done}
    assert len(hosts) == 2                                # both surviving machines ran trials

    # Any machine mirrors every trial (its own and the others') into its DuckDB file.
    sync = subprocess.run([sys.executable, "-m", "automl_pt.cli", "results", str(paths["m1"]), "--sync",
                           "--format", "json", "--all"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SUPPORT)})
    assert sync.returncode == 0, sync.stderr
    assert len(json.loads(sync.stdout)) == len(trials)
    con = duckdb.connect(str(tmp_path / "m1" / "run" / "results.duckdb"), read_only=True)
    rows = con.execute("SELECT count(*), count(DISTINCT number) FROM trials").fetchone()
    reason = con.execute("SELECT state_reason FROM trials WHERE state = 'FAIL'").fetchone()[0]
    epochs = con.execute("SELECT count(DISTINCT trial) FROM epoch_metrics").fetchone()[0]
    con.close()
    assert rows == (len(trials), len(trials))
    assert reason == "stale"
    assert epochs == len(done)                            # remote trials' curves included
