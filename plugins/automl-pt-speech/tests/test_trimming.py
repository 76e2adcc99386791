"""Per-batch trimming: clips are decoded once padded to the data's longest, and each batch is
cut to its own longest clip where the backbone masks padding, with the same features."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from automl_pt_speech.testing import make_tone_tree

    root = make_tone_tree(tmp_path_factory.mktemp("clips"), n_per_class=3, seed=4, formats=("wav",))
    return sorted(str(p) for p in root.rglob("*.wav"))


def _prepared(speech_host, model_dir, clips):
    info = speech_host.hook.automl_pt_resolve_backbone(name=str(model_dir), modality="audio")
    backbone = info.load({}).eval()
    prep = backbone.preprocessor({})
    prep.fit(clips)
    return backbone, prep, prep.encode(clips)


@pytest.mark.parametrize("family", ["wav2vec2", "ast"])
def test_collate_trims_to_the_longest_clip_and_features_stay_the_same(speech_host, tiny_models,
                                                                     clips, family):
    backbone, prep, enc = _prepared(speech_host, tiny_models[family], clips)
    lengths = prep.lengths(enc)
    assert torch.equal(lengths, enc["length"])
    short = torch.argsort(lengths)[:3]                     # the three shortest clips
    batch = {k: v[short] for k, v in enc.items()}
    trimmed = prep.collate(batch)
    assert trimmed["audio"].shape[1] == int(lengths[short].max()) < enc["audio"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode(trimmed), backbone.encode(batch),
                                   rtol=1e-4, atol=1e-5)


def test_whisper_batches_keep_the_fitted_window(speech_host, tiny_models, clips):
    """Whisper's encoder has no attention mask: its window (the data's longest clip) stays."""
    _, prep, enc = _prepared(speech_host, tiny_models["whisper"], clips)
    assert prep.lengths(enc) is None
    batch = {k: v[:2] for k, v in enc.items()}
    assert prep.collate(batch)["audio"].shape == batch["audio"].shape


def test_trimmed_batches_leave_augmentation_room_to_slow_down(speech_host, tiny_models, clips):
    from automl_pt_speech.augment import make_augment

    backbone, prep, enc = _prepared(speech_host, tiny_models["wav2vec2"], clips)
    batch = prep.collate({k: v[:4] for k, v in enc.items()})
    out = make_augment(backbone, 1.0)(dict(batch), torch.Generator().manual_seed(0))
    assert out["audio"].shape[1] > batch["audio"].shape[1]
    assert (out["length"] <= out["audio"].shape[1]).all()
