"""Transfer on the detection quickstart: studies/detection.toml run as shipped (ImageNet
MobileNetV2 backbone, ``init = "pretrained"``) against the same study with the backbone's
weights drawn at random (``init = "random"``, same architecture; the pyramid and head start
fresh in both), one ``automl-pt run`` after the other, on the CPU.

    python studies/make_detection.py                   # the data, once
    python benchmarks/bench_detection_transfer.py [--inits pretrained random] [--epochs N]
        [--threads 2] [--parallel] [--work DIR] [--out benchmarks/results/bench_detection_transfer-DATE.json]

Per init it records the test ``map_50`` / ``map`` / ``map_75`` of the exported best model, the
best validation ``map_50``, the wall and CPU seconds of the whole run (data, trials, export),
the training images/s of the best trial, and the machine (CPU model, cores, load average at
the start: timings on a shared machine are noisy). The pretrained run is the study as shipped;
the random one trains every stage (``frozen_stages = [0]``: frozen random stages would be no
baseline). ``--parallel`` runs both at once (faster, but each slows the other).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "detection.toml"
INITS = ("pretrained", "random")


def study_doc(study: Path, init: str, work: Path, threads: int, epochs: int | None) -> dict[str, Any]:
    """The shipped study with absolute data paths, ``init`` fixed, the CPU, ``threads`` and its
    own run directory (no timeout: each run trains its trials to the end). The random backbone
    trains every stage (``frozen_stages = [0]``): frozen random stages would be no baseline."""
    doc = tomllib.loads(study.read_text())
    doc["study"].pop("timeout", None)
    doc["study"]["name"] = f"detection-{init}"
    for split in ("train", "validation", "test"):
        if split in doc["data"]:
            doc["data"][split] = str((study.parent / doc["data"][split]).resolve())
    space = doc.setdefault("search", {}).setdefault("space", {})
    space["init"] = [init]
    if init == "random":
        space["frozen_stages"] = [0]
    if epochs:
        space["epochs"] = [epochs]
    doc["resources"] = {"devices": "cpu", "num_threads": threads}
    doc["storage"] = {"dir": str(work / f"run-{init}"), "optuna": "sqlite"}
    return doc


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    import torch

    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "host": platform.node(), "gpu": None}


def start(study: Path, init: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Write the study file of ``init`` and start ``automl-pt run`` on it."""
    from automl_pt.autofit import to_toml

    path, log, run_dir = work / f"study-{init}.toml", work / f"{init}.log", work / f"run-{init}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    doc = study_doc(study, init, work, args.threads, args.epochs)
    path.write_text(to_toml(doc))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    row = {"init": init, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "load_average_at_start": round(os.getloadavg()[0], 2), "space": doc["search"]["space"],
           "image_size": doc["data"].get("image_size"), "log": str(log)}
    out = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "automl_pt.cli", "run", str(path), "-q"], env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    return {"row": row, "proc": proc, "out": out, "t0": time.perf_counter(), "run_dir": run_dir}


def finish(job: dict[str, Any]) -> dict[str, Any]:
    """Wait for the run of ``job``; its scores, times and speed."""
    _, status, usage = os.wait4(job["proc"].pid, 0)   # this child's own CPU time
    wall = time.perf_counter() - job["t0"]
    job["out"].close()
    rc = os.waitstatus_to_exitcode(status)
    row = {**job["row"], "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
    log = Path(row["log"])
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-12:])
        return {**row, "error": f"exit {rc}: {tail}"}
    from automl_pt import results

    res = results(str(job["run_dir"]))
    trials = res.trials()
    best = res.study_row.get("best_trial")
    mine = trials[trials["number"] == best]
    curves = res.curves()
    mine_curve = curves[curves["trial"] == best].sort_values("epoch") if len(curves) else curves
    return {**row, "test": res.test_metrics, "validation_map_50": res.study_row.get("best_value"),
            "best_trial": None if best is None else int(best),
            "images_per_s": float(mine["samples_per_s"].iloc[0]) if len(mine) else None,
            "val_map_50_per_epoch": [round(float(v), 4) for v in mine_curve.get("val_map_50", [])]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=STUDY)
    parser.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS))
    parser.add_argument("--epochs", type=int, default=None, help="override the study's epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", action="store_true",
                        help="run the inits at the same time (each gets --threads; wall times then "
                             "include the other run's load)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-detection-transfer")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    study = args.study.resolve()
    if not study.is_file():
        parser.error(f"{study}: no such study file")
    train = (study.parent / tomllib.loads(study.read_text())["data"]["train"]).resolve()
    if not train.is_file():
        parser.error(f"{train}: no training data; build it with python studies/make_detection.py")
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"bench_detection_transfer-{datetime.now(timezone.utc):%Y%m%d}.json")
    report: dict[str, Any] = {"benchmark": "bench_detection_transfer", "study": str(study),
                              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": machine(), "runs": []}
    jobs = [] if not args.parallel else [start(study, init, args, args.work) for init in args.inits]
    for i, init in enumerate(args.inits):
        row = finish(jobs[i] if args.parallel else start(study, init, args, args.work))
        row["parallel_with"] = [x for x in args.inits if x != init] if args.parallel else []
        report["runs"].append(row)
        test = (row.get("test") or {}).get("map_50")
        print(f"{init:<10} test map_50 {test if test is None else round(test, 4)}  "
              f"wall {row['wall_s']:.0f} s  cpu {row['cpu_s']:.0f} s  {row.get('error', '')}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str))   # after each run: partial results
    print(out)
    return 0 if all("error" not in r for r in report["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
