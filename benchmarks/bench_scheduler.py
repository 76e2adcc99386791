"""Benchmark: trials/hour of a fixed small study with 1 vs 2 CPU worker slots, and the per-trial
scheduling overhead (from one trial's end to the next trial's first optimizer step).

    python benchmarks/bench_scheduler.py [--trials 8]

Both runs use the same study (tiny random BERT, synthetic topic data, fixed hyperparameters except
the learning rate), one after the other on this machine; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_study(folder: Path, tiny_bert: Path, trials: int, slots: int) -> tuple[float, list[float], list[float]]:
    from automl_pt import Study
    from tests.conftest import study_toml

    path = study_toml(folder, tiny_bert, trials=trials,
                      space='strategy = ["full"]\nepochs = 2\nbatch_size = [8]',
                      resources=f"trials_per_device = {slots}")
    t0 = time.perf_counter()
    results = Study.from_config(path).run(progress=False)
    wall = time.perf_counter() - t0
    trials_df = results.trials().sort_values("datetime_start")
    gaps = []
    if slots == 1:  # one worker: consecutive trials are back to back
        ends, starts = trials_df["datetime_complete"].tolist(), trials_df["datetime_start"].tolist()
        setup = trials_df["setup_s"].tolist()
        gaps = [(s - e).total_seconds() + su for e, s, su in zip(ends[:-1], starts[1:], setup[1:])]
    return wall, gaps, trials_df["setup_s"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    from automl_pt_text.testing import make_tiny_bert
    from tests.conftest import FILLER, TOPICS, make_topic_rows, write_csv

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bert = make_tiny_bert(tmp / "bert", [" ".join(TOPICS.values()), " ".join(FILLER)], hidden_size=64)
        results = {}
        for slots in (1, 2):
            folder = tmp / f"slots{slots}"
            for name, n, seed in (("train", 200, 1), ("validation", 40, 2), ("test", 40, 3)):
                write_csv(folder / "data" / f"{name}.csv", make_topic_rows(n, seed))
            results[slots] = run_study(folder, bert, args.trials, slots)
        per_hour = {s: args.trials / (w / 3600) for s, (w, _, _) in results.items()}
        print(f"{args.trials} trials (tiny BERT, 600 train rows, 2 epochs), CPU")
        for s in (1, 2):
            print(f"  {s} worker slot(s): {results[s][0]:6.1f} s wall, {per_hour[s]:7.0f} trials/hour")
        print(f"  ratio 2 slots / 1 slot: {per_hour[2] / per_hour[1]:.2f}")
        gaps = results[1][1]
        print(f"  scheduling overhead (1 slot, trial end -> next trial's first step): median "
              f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s over {len(gaps)} gaps")
        print(f"  of which trial set-up (start -> first step): median "
              f"{statistics.median(results[1][2][1:]):.2f} s")


if __name__ == "__main__":
    main()
