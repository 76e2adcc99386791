"""Length-bucketed batches, length-sorted prediction, input sizes from the data, worker threads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import make_topic_rows, study_toml
from automl_pt.train.batching import (bucketed_batches, padded_tokens, random_batches, restore_order,
                                sorted_batches)


def _lengths(n: int = 430, seed: int = 0) -> torch.Tensor:
    """Short texts with a long tail, like the fortunes set (mean ~14 tokens, a few over 100)."""
    g = np.random.default_rng(seed)
    return torch.as_tensor(np.clip(g.lognormal(2.4, 0.6, n), 3, 140).astype(np.int64))


def test_bucketed_order_is_a_permutation_that_changes_every_epoch_and_repeats_per_seed():
    lengths = _lengths()
    gen = torch.Generator().manual_seed(7)
    epoch1 = bucketed_batches(lengths, 32, gen)
    epoch2 = bucketed_batches(lengths, 32, gen)
    for batches in (epoch1, epoch2):
        assert sorted(torch.cat(batches).tolist()) == list(range(len(lengths)))
        assert sum(len(b) < 32 for b in batches) <= 1
    assert [b.tolist() for b in epoch1] != [b.tolist() for b in epoch2]
    assert {tuple(sorted(b.tolist())) for b in epoch1} != {tuple(sorted(b.tolist())) for b in epoch2}
    again = torch.Generator().manual_seed(7)
    assert [b.tolist() for b in bucketed_batches(lengths, 32, again)] == [b.tolist() for b in epoch1]


def test_bucketed_batches_carry_far_fewer_pad_tokens_than_random_ones():
    lengths = _lengths()
    gen = torch.Generator().manual_seed(0)
    real = int(lengths.sum())
    random_carried = padded_tokens(lengths, random_batches(len(lengths), 32, gen))
    bucketed_carried = padded_tokens(lengths, bucketed_batches(lengths, 32, gen))
    assert bucketed_carried >= real
    assert bucketed_carried - real < (random_carried - real) / 5, (real, random_carried, bucketed_carried)


def test_pools_smaller_than_the_data_still_bucket():
    lengths = _lengths(2000, seed=1)
    gen = torch.Generator().manual_seed(0)
    batches = bucketed_batches(lengths, 16, gen, pool_batches=4)
    assert sorted(torch.cat(batches).tolist()) == list(range(2000))
    assert padded_tokens(lengths, batches) < padded_tokens(lengths, random_batches(2000, 16, gen))


def test_sorted_batches_restore_the_original_order():
    lengths = torch.tensor([3, 9, 1, 9, 5, 2, 7])
    batches = sorted_batches(len(lengths), 3, lengths)
    assert [int(lengths[b].max()) for b in batches] == [9, 5, 1]   # longest first
    values = [lengths[b].float().unsqueeze(1) * 10 for b in batches]
    assert restore_order(values, batches).squeeze(1).tolist() == (lengths.float() * 10).tolist()
    assert [b.tolist() for b in sorted_batches(5, 2, None)] == [[0, 1], [2, 3], [4]]


def test_sorted_predictions_equal_unsorted_ones(tiny_bert, text_host):
    from automl_pt.heads import ClassificationHead
    from automl_pt.model import TrialModel
    from automl_pt.train.training import predict_logits

    info = text_host.hook.automl_pt_resolve_backbone(name=str(tiny_bert), modality="text")
    backbone = info.load({})
    prep = backbone.preprocessor({})
    texts = ["rocket", "the court heard a long appeal about the contract and the jury verdict",
             "bake bread", "a moon", "the judge and the lawyer of the trial and the appeal court",
             "soup", "star galaxy comet telescope launch orbit", "cheese"]
    enc = prep.encode(texts)
    lengths = prep.lengths(enc)
    assert lengths.tolist() == enc["attention_mask"].sum(dim=1).tolist()
    torch.manual_seed(0)
    model = TrialModel(backbone, ClassificationHead(backbone.feature_dim, 3, 0.0))
    plain = predict_logits(model, enc, torch.device("cpu"), 3, prep.collate)
    by_length = predict_logits(model, enc, torch.device("cpu"), 3, prep.collate, lengths)
    torch.testing.assert_close(by_length, plain, rtol=1e-4, atol=1e-5)


def test_max_length_comes_from_the_training_texts(tiny_bert, text_host):
    info = text_host.hook.automl_pt_resolve_backbone(name=str(tiny_bert), modality="text")
    backbone = info.load({})
    texts = ["rocket moon " * 3] * 299 + ["rocket moon " * 30]   # one outlier
    typical = len(backbone.tokenizer(texts[0])["input_ids"])
    assert len(backbone.tokenizer(texts[-1])["input_ids"]) > 5 * typical
    prep = backbone.preprocessor({})
    before = prep.fingerprint
    prep.fit(texts)
    assert prep.max_length == typical             # the outlier does not set every text's length
    assert prep.fingerprint != before             # the cache key follows the fitted size
    assert "99th percentile of 300 training texts" in prep.summary()
    assert prep.encode(texts)["input_ids"].shape[1] == typical
    capped = backbone.preprocessor({"max_length": typical - 2})
    capped.fit(texts)
    assert capped.max_length == typical - 2 and "[data] max_length" in capped.summary()


def test_study_reports_the_fitted_max_length_and_exports_it(tmp_path, tiny_bert, topic_data):
    from automl_pt import Study, load

    path = study_toml(tmp_path, tiny_bert, trials=1,
                                             space="epochs = 1\nbatch_size = [8]",
                                             resources='workers = "inline"\nnum_threads = 1')
    Study.from_config(path).run(progress=False)
    meta = json.loads((tmp_path / "run" / "study.json").read_text())
    summary = meta["input_sizes"][str(tiny_bert)]
    assert summary.startswith("max_length ") and "60 training texts" in summary
    fitted = int(summary.split()[1])
    assert 5 <= fitted < 32                       # the topic texts are 7 words; [data] caps at 32
    predictor = load(tmp_path / "run" / "best")
    assert predictor.preprocessor.max_length == fitted
    rows = make_topic_rows(3, 9)
    texts = [r["text"] for r in rows]
    texts[1] = texts[1] + " and the " * 3        # lengths differ: prediction sorts by length
    got = predictor.predict(texts, batch_size=2)
    one_by_one = np.concatenate([predictor.predict([t]).probabilities for t in texts])
    np.testing.assert_allclose(got.probabilities, one_by_one, rtol=1e-4, atol=1e-5)
