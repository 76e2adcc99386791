"""Benchmark: what each of the robust-defaults features buys, on the three quickstarts.

For each quickstart (``studies/quickstart-{text,vision,speech}.toml``, run without its
``[pretrain]`` stage and without its ``timeout``, with the same trial budget everywhere) it runs
``automl-pt run`` on study variants kept as data in :data:`VARIANTS`, one after the other:

* ``probe``: only the frozen-feature linear probe (``strategy = ["linear_probe"]``, one trial):
  the floor a study must beat;
* ``default``: the quickstart as shipped (the probe trial first, known-good configurations,
  training length fitted to the data, epoch and trial soups);
* ``no-fit-length``: without item 0 (``min_steps = [0]``, ``patience = [0]``: the searched epochs
  only, no early stopping);
* ``no-seeding``: without item 1 (``baseline = false``, ``known_good = false``: the sampler from
  its first trial);
* ``lora``: with item 2 (``lora`` added to the strategies);
* ``no-soup``: without item 3 (``soup = "none"``);
* ``refit``: with item 4 (``refit = true``);
* ``warm``: with item 5 (``warm_start`` = this benchmark's ``default`` run of the same
  quickstart, so it runs after ``default``).

For each it records the exported model's test score and validation score, the test score of the
best trial itself, wall and CPU seconds, and the trials' strategies and states; then prints a table
per quickstart with each variant's test score against ``default`` and against ``probe``.

    python studies/make_fortunes.py; python studies/make_fashion_mnist.py; python studies/make_keywords.py
    python benchmarks/bench_quality.py --quickstarts text,vision,speech --trials 4
    python benchmarks/bench_quality.py --quickstarts text --variants probe,default --trials 2 --subsample 60

``--subsample N`` keeps N training examples per class (validation and test untouched) for a smoke
run; ``--data DIR`` (train / validation / test inside, as the quickstart's data) and ``--backbone
NAME`` replace one quickstart's data and backbones (``tests/test_bench_quality.py`` runs it on a
tiny BERT). ``--out`` as in bench_vs_hf (default ``benchmarks/results/bench_quality-<time>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from automl_pt.autofit import to_toml

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
QUICKSTARTS = {m: ROOT / "studies" / f"quickstart-{m}.toml" for m in ("text", "vision", "speech")}

# name -> (issue-12 item, what the variant changes: sections merged into the study file; the
# special value "+lora" appends to the strategy list; "$default" is the default run's directory)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "probe": ("floor", {"study": {"trials": 1}, "search": {"space": {"strategy": ["linear_probe"]}}}),
    "default": ("all on", {}),
    "setfit": ("0 on", {"study": {"trials": 1}, "search": {"space": {"strategy": ["setfit"]}}}),
    "no-fit-length": ("0 off", {"search": {"space": {"min_steps": [0], "patience": [0]}}}),
    "no-seeding": ("1 off", {"search": {"baseline": False, "known_good": False}}),
    "lora": ("2 on", {"search": {"space": {"strategy": "+lora"}}}),
    "no-soup": ("3 off", {"search": {"soup": "none"}}),
    "ensemble": ("3 on", {"search": {"ensemble": 3}}),
    "distill": ("3 on", {"search": {"ensemble": 3, "distill": True}}),
    "refit": ("4 on", {"search": {"refit": True}}),
    "warm": ("5 on", {"search": {"warm_start": "$default"}}),
}


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def subsample_tree(src: Path, dst: Path, per_class: int) -> None:
    """The first ``per_class`` files (sorted) of each class folder of a class-per-folder tree."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(p for p in cls.iterdir() if p.is_file())[:per_class]:
            os.symlink(f.resolve(), dst / cls.name / f.name)


def subsample_csv(src: Path, dst: Path, label: str, per_class: int) -> None:
    import pandas as pd

    frame = pd.read_csv(src)
    frame.groupby(label, sort=True).head(per_class).to_csv(dst, index=False)


def study_doc(quickstart: str, variant: str, trials: int, threads: int, work: Path,
              subsample: int | None, data_dir: Path | None = None,
              backbone: str | None = None) -> dict[str, Any]:
    """The study file of one (quickstart, variant): the shipped study without ``[pretrain]`` and
    ``timeout``, data paths made absolute (or moved to ``data_dir``), the benchmark's trials, CPU,
    threads and run dir."""
    path = QUICKSTARTS[quickstart]
    doc = tomllib.loads(path.read_text())
    doc.pop("pretrain", None)
    doc["study"].pop("timeout", None)
    data = doc["data"]
    for split in ("train", "validation", "test"):
        if split in data:
            data[split] = (str(Path(data_dir).resolve() / Path(data[split]).name) if data_dir
                           else str((path.parent / data[split]).resolve()))
    if backbone:
        doc.setdefault("search", {})["backbones"] = [backbone]
    if subsample:
        src = Path(data["train"])
        dst = work / f"{quickstart}-train-{subsample}"
        if not dst.exists():
            if src.is_dir():
                subsample_tree(src, dst, subsample)
            else:
                dst.mkdir(parents=True)
                subsample_csv(src, dst / src.name, data["label_column"], subsample)
        data["train"] = str(dst if src.is_dir() else dst / src.name)
    change = json.loads(json.dumps(VARIANTS[variant][1]))
    space = doc.setdefault("search", {}).setdefault("space", {})
    if change.get("search", {}).get("space", {}).get("strategy") == "+lora":
        change["search"]["space"]["strategy"] = [*space.get("strategy", ["linear_probe", "full"]), "lora"]
    if change.get("search", {}).get("warm_start") == "$default":
        change["search"]["warm_start"] = [str(work / f"run-{quickstart}-default")]
    _merge(doc, {"study": {"trials": trials, "name": f"quality-{quickstart}-{variant}"}})
    _merge(doc, change)
    _merge(doc, {"resources": {"devices": "cpu", "num_threads": threads},
                 "storage": {"dir": str(work / f"run-{quickstart}-{variant}")}})
    return doc


def run_one(quickstart: str, variant: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    study = work / f"study-{quickstart}-{variant}.toml"
    log = work / f"{quickstart}-{variant}.log"
    run_dir = work / f"run-{quickstart}-{variant}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    doc = study_doc(quickstart, variant, args.trials, args.threads, work, args.subsample,
                    args.data, args.backbone)
    study.write_text(to_toml(doc))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run([sys.executable, "-m", "automl_pt.cli", "run", str(study), "-q"], env=env,
                            stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row: dict[str, Any] = {"quickstart": quickstart, "variant": variant, "item": VARIANTS[variant][0],
                           "wall_s": wall, "cpu_s": after.ru_utime - before.ru_utime
                           + after.ru_stime - before.ru_stime, "log": str(log)}
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-12:])
        return {**row, "error": f"exit {rc}: {tail}"}
    from automl_pt import results

    res = results(str(run_dir))
    metric = res.study_row.get("metric") or doc["study"].get("metric", "accuracy")
    board = res.leaderboard()
    test_col = f"test_{metric}"
    exported = board[board["exported"].fillna(False).astype(bool)] if "exported" in board else board.iloc[:0]
    trials = res.trials()
    best_no = res.study_row.get("best_trial")
    own = board[(board["kind"] == "trial") & (board["trial"] == best_no)] if "kind" in board else board.iloc[:0]
    params = [json.loads(p) if isinstance(p, str) else p for p in trials["params"]]
    return {**row, "metric": metric,
            "test": (res.test_metrics or {}).get(metric),
            "exported_kind": str(exported["kind"].iloc[0]) if len(exported) else "trial",
            "exported_validation": (float(exported[metric].iloc[0]) if len(exported)
                                    else res.study_row.get("best_value")),
            "best_trial_validation": res.study_row.get("best_value"),
            "best_trial_test": float(own[test_col].iloc[0]) if len(own) and test_col in own else None,
            "trials": [{"strategy": (p or {}).get("strategy"), "state": str(s), "value": v}
                       for p, s, v in zip(params, trials["state"], trials["value"])],
            # soups, ensembles, distilled and refit models: validation and test each
            "derived": [{"kind": str(r["kind"]), "validation": _num(r.get(metric)),
                         "test": _num(r.get(test_col)), "exported": bool(r.get("exported"))}
                        for _, r in board.iterrows() if "kind" in board and r["kind"] != "trial"]}


def _num(value: Any) -> float | None:
    try:
        return None if value is None or value != value else float(value)
    except (TypeError, ValueError):
        return None


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for qs in dict.fromkeys(r["quickstart"] for r in rows):
        group = [r for r in rows if r["quickstart"] == qs]
        ref = {r["variant"]: r.get("test") for r in group if "error" not in r}
        head = (f"{qs:<7} {'variant':<14} {'item':<7} {'wall s':>7} {'test':>7} {'vs dflt':>8} "
                f"{'vs probe':>9} {'val':>7}  exported  strategies")
        lines += [head, "-" * len(head)]
        for r in group:
            if "error" in r:
                lines.append(f"{'':<7} {r['variant']:<14} {r['item']:<7} {r['wall_s']:7.0f}  failed: "
                             f"{r['error'].splitlines()[-1][:80]}")
                continue
            d = "" if ref.get("default") is None else f"{r['test'] - ref['default']:+8.3f}"
            p = "" if ref.get("probe") is None else f"{r['test'] - ref['probe']:+9.3f}"
            strategies = ",".join(f"{(t['strategy'] or '?')[:4]}{'' if t['state'] == 'COMPLETE' else '*'}"
                                  for t in r["trials"])
            lines.append(f"{'':<7} {r['variant']:<14} {r['item']:<7} {r['wall_s']:7.0f} {r['test']:7.3f} "
                         f"{d:>8} {p:>9} {r['exported_validation'] or float('nan'):7.3f}  "
                         f"{r['exported_kind']:<8}  {strategies}")
        lines.append("")
    lines.append("(strategies: each trial's, in order; * = pruned or failed)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quickstarts", default="text,vision,speech")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, run in this order (of {', '.join(VARIANTS)})")
    parser.add_argument("--trials", type=int, default=4, help="trials per study (default 4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subsample", type=int, metavar="N", help="N training examples per class")
    parser.add_argument("--data", type=Path, help="this data folder instead of the quickstart's "
                                                  "(one quickstart only)")
    parser.add_argument("--backbone", help="this backbone instead of the quickstart's")
    parser.add_argument("--work", type=Path, help="keep run dirs and logs here (default: a temp dir)")
    parser.add_argument("--out", help="JSON result file ('-' for stdout)")
    args = parser.parse_args(argv)
    quickstarts = [q.strip() for q in args.quickstarts.split(",") if q.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [q for q in quickstarts if q not in QUICKSTARTS] + [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown quickstart or variant {bad[0]!r}")
    if args.data and not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder")
    if args.data and len(quickstarts) != 1:
        parser.error("--data replaces one quickstart's data: name one with --quickstarts")
    if "warm" in variants and "default" not in variants:
        parser.error("the warm variant starts from this run's default variant: list default too")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_quality-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for qs in quickstarts:
            for variant in variants:
                rows.append(run_one(qs, variant, args, work))
                r = rows[-1]
                print(f"  {qs} {variant}: {r['wall_s']:.0f} s, test "
                      f"{r.get('test', float('nan')) if 'error' not in r else 'failed'}", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
              "trials": args.trials, "subsample": args.subsample, "threads": args.threads, "rows": rows}
    print(table(rows))
    text = json.dumps(report, indent=2, default=str)
    if args.out == "-":
        print(text)
    else:
        out = Path(args.out) if args.out else RESULTS_DIR / f"bench_quality-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
