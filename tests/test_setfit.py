"""Strategy ``setfit`` (automl_pt.train.contrastive): contrastive pairs, then the probe."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import automl_pt
from automl_pt import ConfigError, Study
from automl_pt.train.contrastive import draw_pairs
from tests.conftest import study_toml


def test_pairs_are_half_same_class_half_other_class():
    labels = np.array([0, 0, 0, 1, 1, 2, -1])
    first, second, same = draw_pairs(labels, 4, seed=0)
    assert len(first) == 6 * 4 and -1 not in labels[first] and -1 not in labels[second]
    assert (same == 1).sum() == (same == 0).sum() == 12
    np.testing.assert_array_equal(labels[first] == labels[second], same == 1)
    pos = same == 1
    assert (first[pos] != second[pos])[labels[first[pos]] != 2].all()   # another example of the class
    assert (first[pos] == second[pos])[labels[first[pos]] == 2].all()   # a class of one: itself
    again = draw_pairs(labels, 4, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((first, second, same), again))
    assert not np.array_equal(draw_pairs(labels, 4, seed=1)[1], second)


def test_setfit_trial_tunes_the_backbone_then_fits_the_probe_and_exports(
        tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert, trials=1, resources='workers = "inline"',
                      space='strategy = ["setfit"]\nbatch_size = [8]\nsetfit_pairs = [6]')
    results = Study.from_config(path, host=text_host).run(progress=False)
    trial = results.optuna_study().best_trial
    info = trial.user_attrs["setfit"]
    assert info["pairs"] == 60 * 6 and info["steps"] == 45 and info["l2"] > 0
    assert trial.user_attrs.get("probe_l2") is None     # not a frozen probe: the backbone trained
    run_dir = tmp_path / "run"
    best = json.loads((run_dir / "best" / "metrics.json").read_text())
    test = pd.read_csv(topic_data["test"])
    predictor = automl_pt.load(run_dir / "best", host=text_host)
    labels = predictor.predict(test["text"].tolist()).to_frame()["label"]
    assert (labels == test["label"]).mean() == pytest.approx(best["test"]["accuracy"])
    # the exported backbone is the tuned one, not the pretrained weights
    from safetensors.torch import load_file

    tuned = load_file(str(run_dir / "trials" / f"{trial.number:05d}" / "model.safetensors"))
    original = load_file(str(next(tiny_bert.glob("*.safetensors"))))
    key = next(k for k in original if "layer.0" in k and k.endswith("weight") and original[k].ndim == 2)
    tuned_key = next(k for k in tuned if k.endswith(key))
    assert not np.allclose(tuned[tuned_key].numpy(), original[key].numpy())


def test_setfit_on_a_regression_task_is_a_clear_error(tmp_path, tiny_bert, text_host):
    rows = [{"text": f"value {i} words here", "label": float(i) / 7} for i in range(40)]
    (tmp_path / "data").mkdir()
    for split in ("train", "validation", "test"):
        pd.DataFrame(rows).to_csv(tmp_path / "data" / f"{split}.csv", index=False)
    path = study_toml(tmp_path, tiny_bert, trials=1, resources='workers = "inline"',
                      space='strategy = ["setfit"]\nbatch_size = [8]')
    path.write_text(path.read_text().replace('type = "text-classification"', 'type = "text-regression"'))
    with pytest.raises(ConfigError, match=r"\[search.space\] strategy: 'setfit' .* needs a single-label "
                       r"classification task, and 'text-regression' is regression"):
        Study.from_config(path, host=text_host).prepare()
