"""Strategy ``partial`` (the top k blocks trained on cached activations) end to end on a tiny
random BERT: the conditional ``top_layers`` parameter, the activation cache (computed once per k,
shared by trials, reused from disk, memory-mapped when large), export and prediction."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import automl_pt
from automl_pt import Study
from tests.conftest import study_toml


def test_top_layers_is_suggested_only_for_partial_trials(tmp_path, tiny_bert, topic_data, text_host):
    import optuna

    from automl_pt.engine.search import suggest_params

    path = study_toml(tmp_path, tiny_bert, space='top_layers = { low = 2, high = 3 }')
    prepared = Study.from_config(path, host=text_host).prepare()
    assert prepared.space["top_layers"].condition == ("strategy", ("partial",))  # kept by the override
    assert "partial" in prepared.space["strategy"].choices
    seen = []
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: seen.append(suggest_params(t, prepared.space)) or 0.0, n_trials=30)
    for params in seen:
        assert ("top_layers" in params) == (params["strategy"] == "partial"), params
    assert {p["top_layers"] for p in seen if "top_layers" in p} == {2, 3}


def test_a_backbone_without_the_split_refuses_partial_by_name(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    from automl_pt.train import partial
    from automl_pt.errors import BackboneError
    from automl_pt.model import Backbone
    from automl_pt_text.backbone import TransformersTextBackbone

    class Plain(Backbone):
        modality, name, feature_dim = "text", "plain-bb", 4

    with pytest.raises(BackboneError, match="'plain-bb'.*partial"):
        partial.top_layers(Plain(), {"top_layers": 1})
    distil = DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2,
                                              hidden_dim=32, max_position_embeddings=32))
    with pytest.raises(BackboneError, match="'tiny-distil'.*DistilBertModel.*partial"):
        TransformersTextBackbone(distil, None, "tiny-distil").num_blocks()


def test_partial_trials_on_a_backbone_without_the_split_fine_tune_it_whole(tmp_path, tiny_bert,
                                                                          topic_data, text_host):
    """``preset = "fast"`` searches ``partial``: on a backbone that cannot be split (DistilBERT)
    its trials train the whole backbone, say so once, and record ``strategy_run = full``, instead
    of failing and leaving the study with the probe only."""
    import shutil

    from safetensors.torch import load_file
    from transformers import DistilBertConfig, DistilBertModel

    distil = tmp_path / "models" / "tiny-distil"
    DistilBertModel(DistilBertConfig(vocab_size=200, dim=16, n_layers=1, n_heads=2, hidden_dim=32,
                                     max_position_embeddings=64)).save_pretrained(distil)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (tiny_bert / name).exists():
            shutil.copy(tiny_bert / name, distil / name)
    path = study_toml(tmp_path, distil, trials=2,
                      space='strategy = ["partial"]\nepochs = 1\nbatch_size = [8]')
    import optuna

    results = Study.from_config(path, host=text_host).run(progress=False)
    trials = results.trials()
    assert set(trials["state"]) == {"COMPLETE"} and len(trials) == 2, trials
    assert set(trials["strategy"]) == {"partial"}
    stored = optuna.load_study(study_name="tiny", storage=f"sqlite:///{results.run_dir}/optuna.db")
    assert [t.user_attrs.get("strategy_run") for t in stored.trials] == ["full", "full"]
    original = load_file(str(distil / "model.safetensors"))
    exported = load_file(str(results.best_model_dir / "backbone" / "model.safetensors"))
    lowest = [k for k in original if "embeddings.word_embeddings" in k]
    assert lowest and not all(torch.equal(exported[k], original[k]) for k in lowest)  # trained whole


def test_partial_study_exports_a_model_that_predicts_as_trained(tmp_path, tiny_bert, topic_data,
                                                                text_host):
    """Real worker processes; the exported model (plain ``encode`` path) predicts what the
    trained top-k model computed on the cached activations; the lower layers are the original
    weights, the top layer was trained."""
    from safetensors.torch import load_file

    from automl_pt.train import partial

    path = study_toml(tmp_path, tiny_bert, trials=2,
                      space='strategy = "partial"\ntop_layers = 1\nepochs = 2\nbatch_size = [8]')
    results = Study.from_config(path, host=text_host).run(progress=False)
    trials = results.trials()
    assert set(trials["state"]) == {"COMPLETE"} and len(trials) == 2
    assert all(json.loads(p)["top_layers"] == 1 for p in trials["params"])

    best = results.best_model_dir
    predictor = automl_pt.load(best)
    validation = pd.read_csv(topic_data["validation"])
    predicted = predictor.predict(validation["text"].tolist())
    # the trained model: top layer + head on the cached (fp16) activations of layer L-1
    backbone, head = predictor.model.backbone, predictor.model.head
    enc = predictor.preprocessor.encode(validation["text"].tolist())
    cached = partial.compute_activations(backbone, enc, 1, torch.device("cpu"), 64,
                                         predictor.preprocessor.collate)
    # computed in length-sorted batches (as trials do), the rows come back in input order
    texts = [" ".join(t.split()[:1 + i % 3]) for i, t in enumerate(validation["text"])]   # max_length is 9
    mixed = predictor.preprocessor.encode(texts)
    lengths = predictor.preprocessor.lengths(mixed)
    assert lengths is not None and len(set(lengths.tolist())) == 3
    in_order = partial.compute_activations(backbone, mixed, 1, torch.device("cpu"), 3,
                                           predictor.preprocessor.collate)
    by_length = partial.compute_activations(backbone, mixed, 1, torch.device("cpu"), 3,
                                            predictor.preprocessor.collate, lengths)
    assert torch.equal(by_length["attention_mask"], in_order["attention_mask"])
    real = by_length["attention_mask"].bool()
    for key, value in by_length.items():
        if value.is_floating_point():
            np.testing.assert_allclose(value[real].float().numpy(), in_order[key][real].float().numpy(),
                                       atol=2e-3)
    trained = partial.PartialTrialModel(backbone, head, 1).eval()
    with torch.no_grad():
        logits = trained(partial.collate_for(backbone)(cached))
    np.testing.assert_allclose(predicted.probabilities, torch.softmax(logits, -1).numpy(), atol=2e-3)
    accuracy = float(np.mean(np.array(predicted.labels) == validation["label"].to_numpy()))
    assert accuracy == pytest.approx(results.leaderboard().loc[0, "accuracy"], abs=1e-9)

    original = load_file(str(tiny_bert / "model.safetensors"))
    exported = load_file(str(best / "backbone" / "model.safetensors"))
    lower = [k for k in original if "encoder.layer.0." in k or "embeddings" in k]
    upper = [k for k in original if "encoder.layer.1." in k and k.endswith("weight")]
    assert lower and upper
    assert all(torch.equal(exported[k], original[k]) for k in lower)
    assert any(not torch.equal(exported[k], original[k]) for k in upper)


def test_activations_are_computed_once_per_k_shared_and_reused_from_disk(
        tmp_path, tiny_bert, topic_data, text_host, monkeypatch):
    from automl_pt.train import partial
    from automl_pt_text import backbone as text_backbone

    calls: Counter = Counter()
    real = text_backbone.TransformersTextBackbone.encode_bottom

    def counting(self, batch, k):
        calls[k] += 1
        return real(self, batch, k)

    monkeypatch.setattr(text_backbone.TransformersTextBackbone, "encode_bottom", counting)
    path = study_toml(tmp_path, tiny_bert, trials=4, resources='workers = "inline"',
                      space='strategy = "partial"\ntop_layers = [1, 2]\nepochs = 1\nbatch_size = [8]')
    results = Study.from_config(path, host=text_host).run(progress=False)
    used = Counter(json.loads(p)["top_layers"] for p in results.trials()["params"])
    assert sum(used.values()) == 4 and max(used.values()) >= 2   # some k shared by two trials
    # one batch of 64 over train (60 rows) and one over validation (24) per k, whatever the
    # number of trials that used it
    assert calls == Counter({k: 2 for k in used})
    cache = tmp_path / "run" / "cache"
    assert sorted(p.name.rsplit("-", 1)[1] for p in cache.glob("activations-*.safetensors")) == \
        sorted(f"top{k}.safetensors" for k in used for _ in range(2))

    # a fresh process (resume) reads them back from disk, memory-mapped when they are over the
    # memory budget: every k is still computed once over both runs
    mapped = []
    real_mmap = partial.mmap_safetensors
    monkeypatch.setattr(partial, "MEMORY_FRACTION", 0.0)
    monkeypatch.setattr(partial, "mmap_safetensors", lambda p: mapped.append(p) or real_mmap(p))
    again = Study.from_config(path, host=text_host, study={"trials": 6}).run(progress=False)
    trials = again.trials()
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    all_used = {json.loads(p)["top_layers"] for p in trials["params"]}
    assert calls == Counter({k: 2 for k in all_used})
    assert mapped and all(p.parent == cache for p in mapped)


def test_memory_mapped_activations_equal_the_loaded_ones(tmp_path):
    from automl_pt.train import partial
    from automl_pt.engine.trial import save_state

    tensors = {"hidden": torch.randn(5, 3, 4).half(), "attention_mask": torch.ones(5, 3, dtype=torch.long)}
    save_state(tensors, tmp_path / "a.safetensors")
    mapped = partial.mmap_safetensors(tmp_path / "a.safetensors")
    assert set(mapped) == set(tensors)
    for key, value in tensors.items():
        assert mapped[key].dtype == value.dtype and torch.equal(mapped[key], value)
    assert torch.equal(mapped["hidden"][torch.tensor([4, 1])], tensors["hidden"][[4, 1]])


def test_activations_pad_every_dimension_to_the_largest_batch():
    from automl_pt.train import partial

    out = partial._pad_cat([torch.ones(2, 3, 4), torch.ones(1, 5, 4)])
    assert out.shape == (3, 5, 4)
    assert out[:2, 3:].abs().sum() == 0 and out[2].sum() == 20


def test_known_good_partial_configuration_fits_the_default_space():
    from automl_pt.builtin.search_space import default_space
    from automl_pt.engine.seeding import KNOWN_GOOD

    space = default_space()
    config = KNOWN_GOOD["partial"]
    assert config["top_layers"] >= 1
    for name, value in config.items():
        assert space[name].inferred_domain().problem(value) is None, name
