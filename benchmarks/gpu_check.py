"""GPU check for the core (run on a machine with a CUDA GPU; `--smoke` runs it tiny on the CPU).

1. A text study with ``trials_per_device = 2`` on one GPU: two worker processes share the card
   (overlapping trials), bf16 autocast, samples/s, peak memory, GPU memory before / after each
   trial, GPU utilisation sampled with nvidia-smi.
2. A forced real CUDA out-of-memory: an effective batch far too large for the card, recovered by
   micro-batch halving (same effective batch, more gradient accumulation).

    python benchmarks/gpu_check.py            # on the GPU machine
    python benchmarks/gpu_check.py --smoke    # logic check on the CPU
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins" / "automl-pt-text")]

WORDS = ("rocket orbit planet star moon galaxy bread cheese soup apple kitchen recipe court judge "
         "lawyer trial verdict contract the a of and to in is it that was with for on").split()


def make_data(folder: Path, rows: int, words: int, seed: int) -> None:
    import pandas as pd

    rng = random.Random(seed)
    topics = {"space": WORDS[:6], "food": WORDS[6:12], "law": WORDS[12:19]}
    data = []
    for i in range(rows):
        label = list(topics)[i % 3]
        text = " ".join(rng.choice(topics[label] if rng.random() < 0.3 else WORDS) for _ in range(words))
        data.append({"text": text, "label": label})
    folder.mkdir(parents=True, exist_ok=True)
    n_val = max(30, rows // 10)
    pd.DataFrame(data[n_val:]).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(data[:n_val]).to_csv(folder / "validation.csv", index=False)


def make_bert(folder: Path, smoke: bool) -> Path:
    from transformers import BertConfig, BertModel

    from automl_pt_text.testing import make_tiny_bert

    make_tiny_bert(folder, [" ".join(WORDS)])          # tokenizer (and a tiny model)
    if not smoke:                                       # BERT-base shape, random weights
        vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
        BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=512)).save_pretrained(str(folder))
    return folder


def study_file(folder: Path, name: str, bert: Path, device: str, trials: int, per_device: int,
               batch: int, max_length: int, epochs: int) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f"""
[study]
name = "{name}"
trials = {trials}
plugins = ["automl_pt_text"]
max_failures = 2
[task]
type = "text-classification"
[data]
train = "data/train.csv"
validation = "data/validation.csv"
max_length = {max_length}
[search]
backbones = ["{bert}"]
pruner = "none"
[search.space]
strategy = ["full"]
epochs = {epochs}
batch_size = [{batch}]
learning_rate = {{ low = 1e-5, high = 1e-4, log = true }}
[resources]
devices = "{device}"
trials_per_device = {per_device}
[storage]
dir = "runs/{name}"
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    from automl_pt import Study

    smoke = args.smoke
    device = "cpu" if smoke else "cuda"
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bert = make_bert(tmp / "bert", smoke)

        # 1. two trials sharing one GPU
        make_data(tmp / "a" / "data", 200 if smoke else 6000, 40, 0)
        path = study_file(tmp / "a", "share", bert, device, trials=4, per_device=2,
                          batch=16 if smoke else 64, max_length=64 if smoke else 128, epochs=1 if smoke else 2)
        smi = None
        if not smoke:
            smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                    "--format=csv,noheader,nounits", "-lms", "500"],
                                   stdout=open(out / "nvidia_smi.csv", "w"))
        t0 = time.time()
        res = Study.from_config(path).run(progress=False)
        wall = time.time() - t0
        if smi:
            smi.terminate()
        trials = res.trials().sort_values("number")
        cols = ["number", "state", "device", "samples_per_s", "peak_memory_mb", "memory_before_mb",
                "memory_after_mb", "duration_s"]
        print(f"== study 'share': 4 trials, trials_per_device=2, wall {wall:.1f}s")
        print(trials[cols].to_string(index=False))
        spans = sorted(zip(trials["datetime_start"], trials["datetime_complete"]))
        overlaps = sum(b0 < a1 for (a0, a1), (b0, b1) in zip(spans, spans[1:]))
        print(f"overlapping trial pairs: {overlaps}")
        if smi:
            rows = [line.split(",") for line in (out / "nvidia_smi.csv").read_text().splitlines() if line.strip()]
            util = [float(r[0]) for r in rows]
            mem = [float(r[1]) for r in rows]
            busy = [u for u in util if u > 0]
            print(f"nvidia-smi: {len(util)} samples, mean util {sum(util)/len(util):.0f}%, "
                  f"mean util while busy {sum(busy)/max(1,len(busy)):.0f}%, max memory used {max(mem):.0f} MiB")

        # 2. a real OOM recovered by micro-batch halving
        make_data(tmp / "b" / "data", 64 if smoke else 4096, 700, 1)
        path = study_file(tmp / "b", "oom", bert, device, trials=1, per_device=1,
                          batch=64 if smoke else 4096, max_length=64 if smoke else 512, epochs=1)
        t0 = time.time()
        res = Study.from_config(path).run(progress=False)
        trials = res.trials()
        print(f"== study 'oom': effective batch {64 if smoke else 4096}, wall {time.time() - t0:.1f}s")
        print(trials[["number", "state", "state_reason", "micro_batch_size", "oom_retries",
                      "peak_memory_mb", "memory_before_mb", "memory_after_mb", "samples_per_s"]].to_string(index=False))


if __name__ == "__main__":
    main()
