"""Benchmark: the default pruner before (``hyperband``) and after (``auto``: median among trials
of the same strategy) on one small text study: trials per hour and the final score.

    python benchmarks/bench_pruner.py --out /tmp/bench-pruner           # both, one after the other
    python benchmarks/bench_pruner.py --pruner auto --out /tmp/bench-pruner --report

Each run is one study (same data, seed, search space and trial count; only the pruner differs)
with the shipped MiniLM on a fortunes subset, on the CPU; ``--tiny`` uses a randomly initialised
2-layer BERT on a synthetic three-topic set instead (seconds per trial, for a loaded machine). Each
run appends a JSON line to ``OUT/results.jsonl``; ``--report`` prints the table (and the ratio of
trials per hour).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

STUDY = """
[study]
name = "bench-pruner-{pruner}"
trials = {trials}
seed = 0

[task]
type = "text-classification"

[data]
train = "{data}/train.csv"
validation = "{data}/validation.csv"
test = "{data}/test.csv"
max_length = {max_length}

[search]
backbones = ["{backbone}"]
pruner = "{pruner}"

[search.space]
strategy = ["linear_probe", "full", "freeze_then_unfreeze"]
epochs = {{ low = 1, high = 3 }}
batch_size = [{batch_size}]
learning_rate = {{ low = {lr_low}, high = {lr_high}, log = true }}

[resources]
devices = "cpu"

[storage]
dir = "{out}/run-{pruner}"
"""


def tiny_setup(out: Path, per_topic: int) -> tuple[Path, str]:
    """A synthetic three-topic set (the tests' generator) and a random 2-layer BERT."""
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-text"))
    from automl_pt_text.testing import make_tiny_bert
    from tests.conftest import FILLER, TOPICS, make_topic_rows, write_csv

    data = out / "topics"
    for split, n, seed in (("train", per_topic, 1), ("validation", max(8, per_topic // 3), 2),
                           ("test", max(8, per_topic // 3), 3)):
        write_csv(data / f"{split}.csv", make_topic_rows(n, seed))
    model = out / "tiny-bert"
    if not model.exists():
        make_tiny_bert(model, [" ".join(TOPICS.values()), " ".join(FILLER)], hidden_size=64)
    return data, str(model)


def run(pruner: str, out: Path, trials: int, per_topic: int, tiny: bool) -> dict:
    import optuna

    import automl_pt

    if tiny:
        data, backbone = tiny_setup(out, per_topic)
        sizes = {"max_length": 16, "batch_size": 8, "lr_low": 1e-4, "lr_high": 3e-3}
    else:
        data, backbone = out / "fortunes", "minilm-l6"
        sizes = {"max_length": 48, "batch_size": 16, "lr_low": 2e-5, "lr_high": 3e-4}
        if not (data / "train.csv").exists():
            sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-text"))
            from automl_pt_text import datasets

            datasets.main(["--out", str(data), "--per-topic", str(per_topic)])
    path = out / f"study-{pruner}.toml"
    path.write_text(STUDY.format(pruner=pruner, trials=trials, data=data, out=out,
                                 backbone=backbone, **sizes))
    results = automl_pt.run(path, progress=False)   # a finished run dir: resumed, nothing re-run
    trials = _trials(path)
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    # the trials' span (first start to last end): start-up and the final export left out
    seconds = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    metrics = json.loads((results.best_model_dir / "metrics.json").read_text())
    row = {"pruner": pruner, "backbone": "tiny random BERT" if tiny else backbone,
           "trials": len(done), "pruned": sum(t.state.name == "PRUNED" for t in done),
           "epochs_trained": sum(len(t.user_attrs.get("history") or []) for t in done),
           "seconds": round(seconds, 1), "trials_per_hour": round(len(done) * 3600 / seconds, 1),
           "best_validation": round(max(t.value for t in done if t.state.name == "COMPLETE"), 4),
           "test_accuracy": round(float(metrics["test"]["accuracy"]), 4),
           "optuna": optuna.__version__}
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def _trials(path: Path) -> list:
    import optuna

    from automl_pt.spec.config import load_config

    cfg = load_config(path)
    storage = optuna.storages.RDBStorage(f"sqlite:///{cfg.run_dir / 'optuna.db'}")
    study = optuna.load_study(study_name=cfg.study.name, storage=storage)
    return study.trials


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line]
    latest = {r["pruner"]: r for r in rows}
    print("| pruner | trials | pruned | epochs trained | wall s | trials/hour | best validation | test accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in latest.values():
        print(f"| {r['pruner']} | {r['trials']} | {r['pruned']} | {r['epochs_trained']} | {r['seconds']} | "
              f"{r['trials_per_hour']} | {r['best_validation']} | {r['test_accuracy']} |")
    if {"hyperband", "auto"} <= set(latest):
        ratio = latest["auto"]["trials_per_hour"] / latest["hyperband"]["trials_per_hour"]
        print(f"\ntrials/hour, auto / hyperband: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruner", choices=("hyperband", "auto", "median", "none"),
                        help="one pruner (default: hyperband, then auto, then --report)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-pruner"))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--per-topic", type=int, default=40)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="random 2-layer BERT, synthetic topics")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for pruner in [args.pruner] if args.pruner else ["hyperband", "auto"]:
        print(json.dumps(run(pruner, args.out.resolve(), args.trials, args.per_topic, args.tiny)), flush=True)
    if args.report or not args.pruner:
        report(args.out)


if __name__ == "__main__":
    main()
