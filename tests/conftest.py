from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

TOPICS = {
    "space": "rocket orbit planet star moon galaxy astronaut launch comet telescope",
    "food": "bread cheese soup apple kitchen recipe bake dinner pasta salad",
    "law": "court judge lawyer trial verdict contract statute appeal jury crime",
}
FILLER = "the a of and to in is it that was with for on".split()


def make_topic_rows(n_per_topic: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        vocab = words.split()
        for _ in range(n_per_topic):
            tokens = rng.sample(vocab, 3) + rng.sample(FILLER, 4)
            rng.shuffle(tokens)
            rows.append({"text": " ".join(tokens), "label": label})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from automl_pt_text.testing import make_tiny_bert

    texts = [" ".join(TOPICS.values()), " ".join(FILLER)]
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", texts)


@pytest.fixture
def topic_data(tmp_path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "data" / "train.csv", make_topic_rows(20, 1)),
        "validation": write_csv(tmp_path / "data" / "validation.csv", make_topic_rows(8, 2)),
        "test": write_csv(tmp_path / "data" / "test.csv", make_topic_rows(8, 3)),
    }


@pytest.fixture
def text_host():
    """A fresh plugin manager with entry points off and the text plugin registered."""
    import automl_pt_text

    from automl_pt.plugins import create_plugin_host

    return create_plugin_host(entry_points=False, extra=[automl_pt_text])


def study_toml(tmp_path: Path, tiny_bert: Path, extra: str = "", trials: int = 3,
               space: str = 'epochs = { low = 1, high = 2 }\nbatch_size = [8]\nmin_steps = 0',
               resources: str = "", study: str = "") -> Path:
    text = f"""
[study]
name = "tiny"
trials = {trials}
seed = 0
{study}

[task]
type = "text-classification"

[data]
train = "data/train.csv"
validation = "data/validation.csv"
test = "data/test.csv"
max_length = 32

[search]
backbones = ["{tiny_bert}"]
sampler = "tpe"
pruner = "none"

[search.space]
{space}
learning_rate = {{ low = 1e-4, high = 3e-3, log = true }}

[resources]
devices = "cpu"
{resources}

[storage]
dir = "run"
{extra}
"""
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path
