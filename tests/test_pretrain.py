"""Continued pre-training: objectives, views, the cached / resumable [pretrain] stage, the
``init`` hyperparameter, and a third-party objective plugin (tests/support/objective_plugin.py).
Everything runs on tiny random models, real Optuna / DuckDB files and real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from automl_pt.errors import ConfigError
from tests.conftest import make_topic_rows, study_toml, write_csv

SUPPORT = Path(__file__).parent / "support"


def pretrain_study(tmp_path: Path, tiny_bert: Path, pretrain: str = "", trials: int = 1,
                   space: str = 'strategy = ["full"]\nepochs = 1\nbatch_size = [8]\ninit = ["continued"]',
                   study: str = "", resources: str = 'workers = "inline"') -> Path:
    write_csv(tmp_path / "data" / "unlabeled.csv",
              [{"text": r["text"]} for r in make_topic_rows(16, 7)])
    section = "\n[pretrain]\ndata = \"data/unlabeled.csv\"\n" + (
        pretrain or "steps = 8\nbatch_size = 8\nlearning_rate = 1e-3\ncheckpoint_every = 4")
    return study_toml(tmp_path, tiny_bert, trials=trials, space=space, study=study,
                      resources=resources, extra=section)


def text_backbone(path: Path, params: dict | None = None):
    from automl_pt_text.backbone import load_transformers_backbone

    return load_transformers_backbone(str(path), str(path), {"params": params or {}})


def encoded_texts(backbone, n: int = 24, seed: int = 3) -> dict[str, torch.Tensor]:
    prep = backbone.preprocessor({"max_length": 32})
    return prep.encode([r["text"] for r in make_topic_rows(n // 3, seed)])


def first_and_last(losses: list[float], k: int = 5) -> tuple[float, float]:
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


# -- objectives and views ------------------------------------------------------------------------
def test_info_nce_is_low_for_matching_pairs_and_high_for_mismatched():
    from automl_pt.engine.pretrain import info_nce

    a = torch.eye(8) * 5
    matched = info_nce(a, a.clone(), temperature=0.1)
    shuffled = info_nce(a, a[torch.roll(torch.arange(8), 1)], temperature=0.1)
    assert matched < 0.01 < 5.0 < shuffled


def test_contrastive_loss_decreases_on_a_tiny_model(tiny_bert):
    from automl_pt.engine.pretrain import ContrastiveObjective
    from automl_pt_text.pretrain import make_text_views

    torch.manual_seed(0)
    backbone = text_backbone(tiny_bert)
    objective = ContrastiveObjective(backbone, make_text_views(backbone.tokenizer), temperature=0.1)
    data = encoded_texts(backbone)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=2e-3)
    objective.train()
    losses = []
    for step in range(30):
        idx = torch.arange(8) + 8 * (step % 3)
        loss = objective.loss({k: v[idx] for k, v in data.items()}, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    start, end = first_and_last(losses)
    assert end < 0.7 * start, losses


def test_text_views_differ_and_are_deterministic_under_a_seed(tiny_bert):
    from automl_pt_text.pretrain import make_text_views

    backbone = text_backbone(tiny_bert)
    batch = encoded_texts(backbone)
    views = make_text_views(backbone.tokenizer, token_drop=0.3)
    a1, b1 = views(batch, torch.Generator().manual_seed(1))
    a2, b2 = views(batch, torch.Generator().manual_seed(1))
    a3, _ = views(batch, torch.Generator().manual_seed(2))
    assert torch.equal(a1["attention_mask"], a2["attention_mask"])
    assert torch.equal(b1["attention_mask"], b2["attention_mask"])
    assert not torch.equal(a1["attention_mask"], b1["attention_mask"])
    assert not torch.equal(a1["attention_mask"], a3["attention_mask"])
    # only ordinary tokens are dropped: [CLS] / [SEP] / padding keep their mask
    special = torch.isin(batch["input_ids"], torch.tensor(backbone.tokenizer.all_special_ids))
    assert torch.equal(a1["attention_mask"][special], batch["attention_mask"][special])
    # every text keeps at least one ordinary token
    assert ((a1["attention_mask"].bool() & ~special).sum(dim=1) > 0).all()


def test_image_views_differ_and_are_deterministic_under_a_seed():
    from automl_pt_vision.pretrain import make_image_views

    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    views = make_image_views()
    a1, b1 = views({"pixel_values": pixels}, torch.Generator().manual_seed(5))
    a2, b2 = views({"pixel_values": pixels}, torch.Generator().manual_seed(5))
    a3, _ = views({"pixel_values": pixels}, torch.Generator().manual_seed(6))
    assert torch.equal(a1["pixel_values"], a2["pixel_values"]) and torch.equal(b1["pixel_values"], b2["pixel_values"])
    assert (a1["pixel_values"] - b1["pixel_values"]).abs().mean() > 5
    assert (a1["pixel_values"] - a3["pixel_values"]).abs().mean() > 5
    assert a1["pixel_values"].shape == (4, 3, 32, 32)
    assert 0 <= float(a1["pixel_values"].min()) and float(a1["pixel_values"].max()) <= 255


def test_image_blur_smooths_and_keeps_a_constant_image():
    from automl_pt_vision.pretrain import random_blur

    x = torch.rand(2, 3, 128, 128) * 255  # sigma up to 2 % of the side: 2.6 px
    blurred = random_blur(x, torch.Generator().manual_seed(0), probability=1.0)
    assert blurred.diff(dim=-1).abs().mean() < 0.8 * x.diff(dim=-1).abs().mean()
    assert float(blurred.mean()) == pytest.approx(float(x.mean()), rel=0.01)  # a blur moves no brightness
    flat = torch.full((1, 3, 16, 16), 100.0)
    assert torch.allclose(random_blur(flat, torch.Generator().manual_seed(0), probability=1.0), flat)


def test_audio_views_differ_and_are_deterministic_under_a_seed():
    from automl_pt_speech.pretrain import make_audio_views

    class Clip:
        sample_rate = 16000

    t = torch.arange(8000) / 16000
    audio = (torch.sin(2 * torch.pi * 440 * t) * 12000).to(torch.int16).repeat(3, 1)
    batch = {"audio": audio, "length": torch.tensor([8000, 6000, 4000])}
    views = make_audio_views(Clip())
    a1, b1 = views(batch, torch.Generator().manual_seed(3))
    a2, _ = views(batch, torch.Generator().manual_seed(3))
    a3, _ = views(batch, torch.Generator().manual_seed(4))
    assert torch.equal(a1["audio"], a2["audio"]) and torch.equal(a1["length"], a2["length"])
    assert not torch.allclose(a1["audio"], b1["audio"])
    assert not torch.allclose(a1["audio"], a3["audio"])
    assert a1["audio"].dtype == torch.float32 and a1["audio"].abs().max() < 1.5
    # beyond each clip's (new) valid length there is silence
    for row, length in zip(a1["audio"], a1["length"]):
        tail = row[int(length):]
        assert tail.numel() == 0 or float(tail.abs().max()) == 0.0


def test_mlm_masking_follows_80_10_10_on_ordinary_tokens_only(tiny_bert):
    from automl_pt_text.pretrain import mask_tokens

    tok = text_backbone(tiny_bert).tokenizer
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(len(tok.all_special_ids) + 5, len(tok), (64, 64), generator=g)
    ids[:, 0], ids[:, 47] = tok.cls_token_id, tok.sep_token_id
    mask = torch.ones_like(ids)
    mask[:, 48:] = 0
    ids[:, 48:] = tok.pad_token_id
    masked_ids, labels = mask_tokens(ids, mask, tok, 0.15, g)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 47:].any()
    assert 0.12 < chosen[:, 1:47].float().mean() < 0.18
    assert torch.equal(labels[chosen], ids[chosen])
    as_mask = (masked_ids[chosen] == tok.mask_token_id).float().mean()
    unchanged = (masked_ids[chosen] == ids[chosen]).float().mean()
    assert 0.75 < as_mask < 0.85 and 0.05 < unchanged < 0.15
    assert torch.equal(masked_ids[~chosen], ids[~chosen])


def test_mlm_trains_a_fresh_head_or_reuses_the_checkpoints(tiny_bert, tmp_path):
    from transformers import BertForMaskedLM

    from automl_pt_text.pretrain import MaskedLMObjective

    backbone = text_backbone(tiny_bert)
    fresh = MaskedLMObjective(backbone, 0.15)
    assert fresh.fresh_head and getattr(fresh.mlm, fresh.mlm.base_model_prefix) is backbone.model
    # tied decoder: the output embedding is the backbone's input embedding
    assert fresh.mlm.get_output_embeddings().weight is backbone.model.get_input_embeddings().weight
    data = encoded_texts(backbone)
    optimizer = torch.optim.AdamW(fresh.parameters(), lr=3e-3)
    losses = []
    for step in range(25):
        loss = fresh.loss(data, torch.Generator().manual_seed(step % 2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    start, end = first_and_last(losses)
    assert end < 0.8 * start, losses

    with_head = tmp_path / "with-head"
    mlm = BertForMaskedLM.from_pretrained(str(tiny_bert))
    torch.nn.init.normal_(mlm.cls.predictions.transform.dense.weight, std=0.5)
    mlm.save_pretrained(str(with_head))
    backbone.tokenizer.save_pretrained(str(with_head))
    reused = MaskedLMObjective(text_backbone(with_head), 0.15)
    assert not reused.fresh_head
    assert torch.equal(reused.mlm.cls.predictions.transform.dense.weight,
                       mlm.cls.predictions.transform.dense.weight)


# -- the stage in a study --------------------------------------------------------------------------
def test_study_pretrains_once_per_backbone_caches_and_records_curves(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study
    from automl_pt.engine.pretrain import FINAL_FILE, checkpoint_for
    from automl_pt.engine.trial import TrialRunner

    path = pretrain_study(tmp_path, tiny_bert, resources="")  # trials in a worker process
    study = Study.from_config(path)
    results = study.run(progress=False)
    run_dir = tmp_path / "run"
    [directory] = list((run_dir / "pretrain").iterdir())
    assert checkpoint_for(study, str(tiny_bert)) == directory
    done = json.loads((directory / "done.json").read_text())
    assert done["steps"] == 8 and done["objective"] == "contrastive" and done["resumed_from_step"] == 0
    assert not (directory / "resume.pt").exists()

    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT backbone, objective, step, epoch, loss, key FROM pretrain_metrics "
                           "ORDER BY step").df()
    finally:
        con.close()
    assert rows["step"].tolist() == list(range(1, 9))
    assert set(rows["key"]) == {directory.name} and set(rows["backbone"]) == {str(tiny_bert)}
    assert rows["epoch"].tolist() == [1] * 6 + [2] * 2   # 48 texts: 6 steps of 8 per epoch
    curves = results.pretrain_curves()
    assert curves["loss"].tolist() == pytest.approx(rows["loss"].tolist())

    # the trial searched init and its backbone carried the continued-pretraining weights
    assert results.trials()["init"].tolist() == ["continued"]
    board = results.leaderboard()   # shown where it was searched (soups share their trial's)
    assert board[board["kind"] == "trial"]["init"].tolist() == ["continued"]
    from safetensors.torch import load_file

    saved = load_file(str(directory / FINAL_FILE))
    prepared = study.prepare()
    runner = TrialRunner(study.config, prepared.host, prepared.task, prepared.data, prepared.space,
                         torch.device("cpu"), run_dir)
    _, continued = runner.load_backbone(str(tiny_bert), {"init": "continued"})
    _, original = runner.load_backbone(str(tiny_bert), {"init": "pretrained"})
    name = "model.embeddings.word_embeddings.weight"
    assert torch.equal(continued.state_dict()[name], saved[name])
    assert not torch.equal(original.state_dict()[name], saved[name])

    # a second run skips the finished stage; other settings get their own cache entry
    stamp = (directory / FINAL_FILE).stat().st_mtime_ns
    Study.from_config(path, study={"trials": 2}).run(progress=False)
    assert (directory / FINAL_FILE).stat().st_mtime_ns == stamp
    assert len(list((run_dir / "pretrain").iterdir())) == 1
    changed = Study.from_config(path, pretrain={"learning_rate": 5e-4})
    assert checkpoint_for(changed, str(tiny_bert)) is None


def test_init_is_searched_only_with_a_pretrain_section(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study

    with_pretrain = Study.from_config(pretrain_study(tmp_path, tiny_bert, space="epochs = 1")).prepare()
    assert with_pretrain.space["init"].choices == ("pretrained", "continued")
    plain = Study.from_config(study_toml(tmp_path, tiny_bert)).prepare()
    assert "init" not in plain.space
    # named without [pretrain]: the random-init baseline of a transfer study (not "continued")
    named = Study.from_config(study_toml(tmp_path, tiny_bert, space='init = ["random"]\nepochs = [1]')).prepare()
    assert named.space["init"].choices == ("random",)
    with pytest.raises(ConfigError, match="init"):
        Study.from_config(study_toml(tmp_path, tiny_bert, space='init = ["continued"]')).prepare()


def test_stage_resumes_after_sigkill_from_its_step_checkpoint(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study
    from automl_pt.engine.pretrain import FINAL_FILE, LOSSES_FILE, RESUME_FILE, run_pretraining

    settings = "steps = 40\nbatch_size = 8\nlearning_rate = 1e-3\ncheckpoint_every = 5"
    path = pretrain_study(tmp_path, tiny_bert, pretrain=settings)
    script = ("import sys\nfrom automl_pt import Study\nfrom automl_pt.engine.pretrain import run_pretraining\n"
              "s = Study.from_config(sys.argv[1])\nrun_pretraining(s, s.prepare(), sys.argv[2], progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(tiny_bert)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    resume = None
    while proc.poll() is None and time.monotonic() < deadline:
        found = list((tmp_path / "run" / "pretrain").glob(f"*/{RESUME_FILE}"))
        if found:
            os.kill(proc.pid, signal.SIGKILL)
            resume = found[0]
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert resume is not None, proc.stdout.read().decode()[-3000:]
    assert proc.returncode == -signal.SIGKILL
    directory = resume.parent
    assert not (directory / "done.json").exists()
    state = torch.load(str(resume), map_location="cpu", weights_only=True)
    killed_at = int(state["step"])
    assert 5 <= killed_at < 40 and killed_at % 5 == 0
    before = [row[2] for row in state["losses"]]

    study = Study.from_config(path)
    assert run_pretraining(study, study.prepare(), str(tiny_bert), progress=False) == directory
    done = json.loads((directory / "done.json").read_text())
    assert done["resumed_from_step"] == killed_at and done["steps"] == 40
    import pandas as pd

    curve = pd.read_parquet(directory / LOSSES_FILE)
    assert curve["step"].tolist() == list(range(1, 41))
    assert curve["loss"].tolist()[:killed_at] == pytest.approx(before)

    # the resumed run took the same steps as an uninterrupted one
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    (fresh_dir / "data").symlink_to(tmp_path / "data")
    fresh = Study.from_config(path, storage={"dir": str(fresh_dir / "run")})
    other = run_pretraining(fresh, fresh.prepare(), str(tiny_bert), progress=False)
    from safetensors.torch import load_file

    a, b = load_file(str(directory / FINAL_FILE)), load_file(str(other / FINAL_FILE))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert pd.read_parquet(other / LOSSES_FILE)["loss"].tolist() == pytest.approx(curve["loss"].tolist(), rel=1e-4)


def test_a_third_party_plugin_adds_an_objective(tmp_path, tiny_bert, topic_data, monkeypatch):
    from automl_pt import Study
    from automl_pt.engine.pretrain import LOSSES_FILE, objectives, run_pretraining

    monkeypatch.syspath_prepend(str(SUPPORT))
    path = pretrain_study(tmp_path, tiny_bert, study='plugins = ["objective_plugin"]', pretrain=(
        'objective = "bag-of-words"\nsteps = 30\nbatch_size = 8\nlearning_rate = 3e-3'))
    study = Study.from_config(path)
    prepared = study.prepare()
    registered = objectives(prepared.host)
    assert registered["bag-of-words"].plugin == "objective_plugin"
    assert registered["mlm"].modalities == ("text",) and registered["contrastive"].plugin == "objectives"
    directory = run_pretraining(study, prepared, str(tiny_bert), progress=False)
    assert json.loads((directory / "done.json").read_text())["objective"] == "bag-of-words"
    import pandas as pd

    start, end = first_and_last(pd.read_parquet(directory / LOSSES_FILE)["loss"].tolist())
    assert end < 0.8 * start
    sys.modules.pop("objective_plugin", None)


def test_mlm_stage_keeps_the_encoder_and_drops_the_head(tmp_path, tiny_bert, topic_data):
    from safetensors.torch import load_file

    from automl_pt import Study
    from automl_pt.engine.pretrain import FINAL_FILE, run_pretraining

    path = pretrain_study(tmp_path, tiny_bert, pretrain='objective = "mlm"\nsteps = 4\nbatch_size = 8')
    study = Study.from_config(path)
    directory = run_pretraining(study, study.prepare(), str(tiny_bert), progress=False)
    saved = load_file(str(directory / FINAL_FILE))
    assert set(saved) == set(text_backbone(tiny_bert).state_dict())


# -- errors -----------------------------------------------------------------------------------------
def test_unknown_or_mismatched_objective_is_a_config_error_with_its_line(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study
    from automl_pt.errors import ConfigError

    path = pretrain_study(tmp_path, tiny_bert, pretrain='objective = "contrastiv"')
    with pytest.raises(ConfigError) as err:
        Study.from_config(path).prepare()
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "contrastiv" in text)
    assert f"{path}:{line}" in str(err.value) and "did you mean 'contrastive'" in str(err.value)


@pytest.mark.parametrize("body, message", [
    ("steps = 4", "[pretrain]: missing required key data"),
    ('data = "data/unlabeled.csv"\nepochs = 1\nsteps = 3', "[pretrain] steps: give epochs or steps"),
    ('data = "data/unlabeled.csv"\nbatchsize = 8', "did you mean 'batch_size'"),
    ('data = "data/unlabeled.csv"\nbatch_size = 1', "[pretrain] batch_size: must be at least 2"),
    ('data = "data/nowhere.csv"', "[pretrain] data: file not found"),
])
def test_pretrain_section_is_validated(tmp_path, tiny_bert, topic_data, body, message):
    from automl_pt.spec.config import load_config
    from automl_pt.errors import ConfigError

    write_csv(tmp_path / "data" / "unlabeled.csv", [{"text": "a b c"}, {"text": "d e f"}])
    path = study_toml(tmp_path, tiny_bert, extra=f"\n[pretrain]\n{body}\n")
    with pytest.raises(ConfigError, match=str(path).replace(".", r"\.") + r":\d+") as err:
        load_config(path)
    assert message in str(err.value)


def test_continued_checkpoint_that_does_not_fit_names_the_file(tmp_path, tiny_bert):
    from safetensors.torch import save_file

    from automl_pt.errors import BackboneError
    from automl_pt.engine.pretrain import FINAL_FILE, load_backbone_weights

    backbone = text_backbone(tiny_bert)
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    state["model.embeddings.word_embeddings.weight"] = torch.zeros(3, 3)
    state.pop("model.pooler.dense.bias")
    save_file(state, str(tmp_path / FINAL_FILE))
    with pytest.raises(BackboneError) as err:
        load_backbone_weights(backbone, tmp_path, "tiny")
    text = str(err.value)
    assert str(tmp_path / FINAL_FILE) in text and "model.pooler.dense.bias" in text
    assert "wrong shape: model.embeddings.word_embeddings.weight (3, 3)" in text


def test_continued_without_a_finished_stage_is_a_clear_error(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study
    from automl_pt.errors import BackboneError
    from automl_pt.engine.trial import TrialRunner

    study = Study.from_config(pretrain_study(tmp_path, tiny_bert))
    p = study.prepare()
    runner = TrialRunner(study.config, p.host, p.task, p.data, p.space, torch.device("cpu"), tmp_path / "run")
    with pytest.raises(BackboneError, match="no finished continued-pretraining checkpoint"):
        runner.load_backbone(str(tiny_bert), {"init": "continued"})


# -- init = "random" in every plugin's loader -------------------------------------------------------
def _differs(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)


def test_random_init_keeps_the_architecture_with_new_weights(tiny_bert, tmp_path):
    from automl_pt_speech.backbones import load_audio_backbone
    from automl_pt_speech.testing import make_tiny_wav2vec2
    from automl_pt_vision.backbone import load_local_dir
    from automl_pt_vision.testing import make_tiny_timm

    torch.manual_seed(1)
    assert _differs(text_backbone(tiny_bert).state_dict(),
                    text_backbone(tiny_bert, {"init": "random"}).state_dict())
    timm_dir = make_tiny_timm(tmp_path / "timm")
    assert _differs(load_local_dir(timm_dir, "t", {"params": {}}).state_dict(),
                    load_local_dir(timm_dir, "t", {"params": {"init": "random"}}).state_dict())
    wav = make_tiny_wav2vec2(tmp_path / "wav2vec2")
    assert _differs(load_audio_backbone(str(wav), "w", {"params": {}}).state_dict(),
                    load_audio_backbone(str(wav), "w", {"params": {"init": "random"}}).state_dict())


# -- images and audio: flat folders of unlabeled files, the modality plugins' views -----------------
def _flatten(tree: Path, flat: Path) -> Path:
    """Move every file of a class-per-folder tree into one flat folder (no labels left)."""
    flat.mkdir(parents=True)
    for i, f in enumerate(sorted(p for p in tree.rglob("*") if p.is_file())):
        f.rename(flat / f"{i:03d}{f.suffix}")
    return flat


def _modality_study(tmp_path: Path, task: str, backbone: Path, extra_data: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f"""
[study]
name = "{task}-pretrain"
trials = 1

[task]
type = "{task}"

[data]
train = "train"
{extra_data}

[search]
backbones = ["{backbone}"]

[resources]
devices = "cpu"

[storage]
dir = "run"

[pretrain]
data = "unlabeled"
steps = 3
batch_size = 6
learning_rate = 1e-3
""")
    return path


def _pretrain_and_reload(path: Path, backbone: Path, load) -> dict:
    from automl_pt import Study
    from automl_pt.engine.pretrain import load_backbone_weights, run_pretraining

    study = Study.from_config(path)
    prepared = study.prepare()
    directory = run_pretraining(study, prepared, str(backbone), progress=False)
    done = json.loads((directory / "done.json").read_text())
    fresh = load()
    load_backbone_weights(fresh, directory, str(backbone))   # the checkpoint fits the backbone
    return done


def test_image_stage_reads_a_flat_folder_and_uses_the_vision_views(tmp_path):
    from automl_pt_vision.backbone import load_local_dir
    from automl_pt_vision.testing import make_image_tree, make_tiny_timm

    timm_dir = make_tiny_timm(tmp_path / "timm")
    make_image_tree(tmp_path / "train", n_per_class=3)
    _flatten(make_image_tree(tmp_path / "pool", n_per_class=4, seed=1), tmp_path / "unlabeled")
    path = _modality_study(tmp_path, "image-classification", timm_dir, "image_size = 32")
    done = _pretrain_and_reload(path, timm_dir, lambda: load_local_dir(timm_dir, "t", {"params": {}}))
    assert done["examples"] == 12 and done["steps"] == 3 and np.isfinite(done["final_loss"])


def test_audio_stage_reads_a_flat_folder_and_uses_the_speech_views(tmp_path):
    from automl_pt_speech.backbones import load_audio_backbone
    from automl_pt_speech.testing import make_tiny_wav2vec2, make_tone_tree

    wav = make_tiny_wav2vec2(tmp_path / "wav2vec2")
    make_tone_tree(tmp_path / "train", n_per_class=3, seed=0, formats=("wav",))
    _flatten(make_tone_tree(tmp_path / "pool", n_per_class=3, seed=1, formats=("wav",)),
             tmp_path / "unlabeled")
    path = _modality_study(tmp_path, "audio-classification", wav)
    done = _pretrain_and_reload(path, wav, lambda: load_audio_backbone(str(wav), "w", {"params": {}}))
    assert done["steps"] == 3 and np.isfinite(done["final_loss"])


# -- documented examples ----------------------------------------------------------------------------
def _block(path: Path, pattern: str) -> str:
    import re

    match = re.search(pattern, path.read_text(), re.S)
    assert match, f"example not found in {path}"
    return match.group(1)


def test_readme_example_runs(tmp_path, tiny_bert, topic_data, monkeypatch, capsys):
    root = Path(__file__).resolve().parents[1]
    code = _block(root / "README.md", r"<!-- readme-test: pretrain -->\s*```python\n(.*?)```")
    study = pretrain_study(tmp_path, tiny_bert, space="epochs = 1\nbatch_size = [8]\nstrategy = [\"full\"]")
    monkeypatch.chdir(tmp_path)
    code = code.replace("studies/quickstart-text.toml", str(study)).replace('"minilm-l6"', repr(str(tiny_bert)))
    exec(compile(code, "README.md:pretrain", "exec"), {})
    out = capsys.readouterr().out
    assert "first" in out and "init" in out
    assert str(tmp_path / "run" / "pretrain") in out


def test_docs_objective_example_is_a_working_plugin(tmp_path, tiny_bert, topic_data, monkeypatch):
    from automl_pt import Study
    from automl_pt.engine.pretrain import run_pretraining

    root = Path(__file__).resolve().parents[1]
    code = _block(root / "docs" / "pretraining.md", r"```python\n(# my_objective\.py.*?)```")
    (tmp_path / "my_objective.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = pretrain_study(tmp_path, tiny_bert, study='plugins = ["my_objective"]',
                          pretrain='objective = "unit-norm"\nsteps = 3\nbatch_size = 8')
    try:
        study = Study.from_config(path)
        directory = run_pretraining(study, study.prepare(), str(tiny_bert), progress=False)
    finally:
        sys.modules.pop("my_objective", None)
    assert json.loads((directory / "done.json").read_text())["objective"] == "unit-norm"
