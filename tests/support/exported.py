"""Exported ``best/`` folders of tiny one-trial studies, one per modality, for the export-format
and prediction tests. Each runs a real study (Optuna, DuckDB, the trial loop, ``export_best``)
in-process on tiny random models: a few seconds each."""

from __future__ import annotations

from pathlib import Path

FIXED_SPACE = """strategy = ["full"]
learning_rate = [0.002]
head_lr_multiplier = [10.0]
layer_decay = [1.0]
weight_decay = [0.0]
warmup_ratio = [0.0]
epochs = [1]
batch_size = [8]
dropout = [0.0]
label_smoothing = [0.0]
schedule = ["cosine"]
"""


def _study(root: Path, task: str, backbone: Path, data: str, space: str = FIXED_SPACE) -> Path:
    text = f"""
[study]
name = "tiny-{task}"
trials = 1
seed = 0

[task]
type = "{task}"

[data]
{data}

[search]
backbones = ["{backbone}"]
sampler = "random"
pruner = "none"

[search.space]
{space}

[resources]
devices = "cpu"
workers = "inline"
num_threads = 1

[storage]
dir = "run"
"""
    path = root / "study.toml"
    path.write_text(text)
    return path


def cached(base: Path, name: str, build) -> Path:
    """``build(base / name)``'s ``best/`` folder, built once per test session (``base`` is the
    session's base temp folder, shared by every test module)."""
    best = base / name / "run" / "best"
    if not (best / "automl_pt.json").is_file():
        (base / name).mkdir(parents=True, exist_ok=True)
        best = build(base / name)
    return best


def _run(path: Path, plugin) -> Path:
    from automl_pt import Study
    from automl_pt.plugins import create_plugin_host

    host = create_plugin_host(entry_points=False, extra=[plugin])
    results = Study.from_config(path, host=host).run(progress=False)
    return Path(results.best_model_dir)


def text_best(root: Path) -> Path:
    import automl_pt_text
    from automl_pt_text.testing import make_tiny_bert

    from tests.conftest import FILLER, TOPICS, make_topic_rows, write_csv

    bert = make_tiny_bert(root / "tiny-bert", [" ".join(TOPICS.values()), " ".join(FILLER)])
    write_csv(root / "data" / "train.csv", make_topic_rows(12, 1))
    write_csv(root / "data" / "validation.csv", make_topic_rows(4, 2))
    write_csv(root / "data" / "test.csv", make_topic_rows(4, 3))
    data = ('train = "data/train.csv"\nvalidation = "data/validation.csv"\n'
            'test = "data/test.csv"\nmax_length = 32')
    return _run(_study(root, "text-classification", bert, data), automl_pt_text)


def image_best(root: Path) -> Path:
    import automl_pt_vision
    from automl_pt_vision.testing import make_image_tree, make_tiny_timm, write_table

    model = make_tiny_timm(root / "tiny-timm", image_size=32)
    make_image_tree(root / "data" / "train", n_per_class=8, size=32, seed=1)
    make_image_tree(root / "data" / "test_images", n_per_class=3, size=40, seed=2)
    write_table(root / "data" / "test.csv", root / "data" / "test_images")
    data = 'train = "data/train"\ntest = "data/test.csv"\nimage_size = 32'
    space = FIXED_SPACE + 'augmentation_strength = [0.0]\nmixup = ["none"]\n'
    return _run(_study(root, "image-classification", model, data, space), automl_pt_vision)


def audio_best(root: Path, kind: str = "wav2vec2") -> Path:
    import automl_pt_speech
    from automl_pt_speech.testing import (make_tiny_ast, make_tiny_wav2vec2, make_tiny_whisper,
                                          make_tone_tree, write_table)

    maker = {"wav2vec2": make_tiny_wav2vec2, "whisper": make_tiny_whisper, "ast": make_tiny_ast}[kind]
    model = maker(root / f"tiny-{kind}")
    make_tone_tree(root / "data" / "train", n_per_class=6, seed=1)
    make_tone_tree(root / "data" / "validation", n_per_class=2, seed=2)
    make_tone_tree(root / "data" / "test_clips", n_per_class=2, seed=3)
    write_table(root / "data" / "test.csv", root / "data" / "test_clips")
    data = 'train = "data/train"\nvalidation = "data/validation"\ntest = "data/test.csv"'
    space = FIXED_SPACE + 'pooling = ["mean"]\naugmentation_strength = [0.0]\n'
    return _run(_study(root, "audio-classification", model, data, space), automl_pt_speech)


#: the fixed space of regression and multi-label studies (label_smoothing is single-label only)
TASK_SPACE = FIXED_SPACE.replace("label_smoothing = [0.0]\n", "")


def _task_data(root: Path, frames: dict, extra: str) -> str:
    """Write ``frames`` (split → DataFrame) as CSVs under ``root/data`` and return the
    ``[data]`` section that reads them."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    lines = []
    for split, frame in frames.items():
        frame.to_csv(root / "data" / f"{split}.csv", index=False)
        lines.append(f'{split} = "data/{split}.csv"')
    return "\n".join(lines) + "\n" + extra


def text_task_best(root: Path, kind: str) -> Path:
    """A one-trial ``text-regression`` (target ``score``) or ``text-multilabel`` (column
    ``topics``, labels joined by ``;``) study on a tiny random BERT."""
    import pandas as pd

    import automl_pt_text
    from automl_pt_text.testing import make_tiny_bert

    from tests.conftest import FILLER, TOPICS
    from tests.test_tasks import multilabel_rows, regression_rows

    bert = make_tiny_bert(root / "tiny-bert", [" ".join(TOPICS.values()), " ".join(FILLER)])
    rows = regression_rows if kind == "regression" else multilabel_rows
    frames = {split: pd.DataFrame(rows(n, seed)) for split, n, seed in
              (("train", 48, 1), ("validation", 16, 2), ("test", 16, 3))}
    extra = ('label_column = "score"\n' if kind == "regression" else
             'label_column = "topics"\nlabel_separator = ";"\n') + "max_length = 32"
    return _run(_study(root, f"text-{kind}", bert, _task_data(root, frames, extra), TASK_SPACE),
                automl_pt_text)


def image_task_best(root: Path, kind: str) -> Path:
    """A one-trial ``image-regression`` (target ``brightness``: an image's mean pixel value in
    [0, 1]) or ``image-multilabel`` (``tags``: its pattern, plus ``bright`` for brighter images)
    study on a tiny random timm model, from tables of image paths."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    import automl_pt_vision
    from automl_pt_vision.testing import make_image_tree, make_tiny_timm

    model = make_tiny_timm(root / "tiny-timm", image_size=32)
    frames = {}
    for split, n, seed in (("train", 8, 1), ("validation", 3, 2), ("test", 3, 3)):
        tree = make_image_tree(root / "data" / f"{split}_images", n_per_class=n, size=32, seed=seed)
        rows = []
        for f in sorted(p for p in tree.rglob("*.png")):
            mean = float(np.asarray(Image.open(f)).mean()) / 255
            rows.append({"image": str(f.relative_to(root / "data")), "brightness": round(mean, 4),
                         "tags": f.parent.name + ("|bright" if mean > 0.45 else "")})
        frames[split] = pd.DataFrame(rows)
    frames = {split: frame.drop(columns=["tags" if kind == "regression" else "brightness"])
              for split, frame in frames.items()}
    extra = (f'image_column = "image"\nlabel_column = "{"brightness" if kind == "regression" else "tags"}"'
             "\nimage_size = 32")
    space = TASK_SPACE + 'augmentation_strength = [0.0]\n'
    return _run(_study(root, f"image-{kind}", model, _task_data(root, frames, extra), space),
                automl_pt_vision)
