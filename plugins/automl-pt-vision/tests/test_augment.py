"""The batched augmentation: strength 0 is no augmentation, mixing yields proper soft targets,
same seed same batch, and the core's loss trains on soft targets."""

from __future__ import annotations

import pytest
import torch

from automl_pt_vision.augment import make_augment, mix, random_affine


def batch(n=8, size=16, num_labels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return {"pixel_values": pixels, "targets": torch.arange(n) % num_labels}


def test_nothing_to_do_gives_no_augment():
    assert make_augment(0.0, "none", 4) is None
    with pytest.raises(ValueError, match="mixup must be one of"):
        make_augment(0.5, "blend", 4)


def test_same_seed_same_batch_and_strength_scales_the_change():
    aug = make_augment(0.8, "none", 4)
    b = batch()
    one = aug(b, torch.Generator().manual_seed(1))["pixel_values"]
    two = aug(b, torch.Generator().manual_seed(1))["pixel_values"]
    torch.testing.assert_close(one, two)
    other = aug(b, torch.Generator().manual_seed(2))["pixel_values"]
    assert not torch.allclose(one, other)
    weak = make_augment(0.05, "none", 4)(b, torch.Generator().manual_seed(1))["pixel_values"]
    x = b["pixel_values"].float()
    assert (weak - x).abs().mean() < (one - x).abs().mean()
    assert one.dtype == torch.float32 and one.min() >= 0 and one.max() <= 255
    assert torch.equal(aug(b, torch.Generator())["targets"], b["targets"])  # no mixing: hard


def test_identity_affine_at_zero_strength_keeps_pixels_up_to_flips():
    x = batch()["pixel_values"].float()
    out = random_affine(x, 0.0, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert torch.allclose(out[i], x[i], atol=1e-3) or \
            torch.allclose(out[i], x[i].flip(-1), atol=1e-3)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_makes_consistent_soft_targets(kind):
    import math

    import torch.nn.functional as F

    from automl_pt_vision.augment import CUTMIX_ALPHA, MIXUP_ALPHA, _beta

    n, size = 16, 16
    b = batch(n=n, size=size, num_labels=5)
    x = b["pixel_values"].float()
    mixed, soft = mix(x, b["targets"], 5, kind, torch.Generator().manual_seed(3))
    assert soft.shape == (n, 5) and soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(n))
    # replay the same draws and rebuild the expected batch independently
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(n, generator=g)
    onehot = F.one_hot(b["targets"], 5).float()
    if kind == "mixup":
        lam = _beta(MIXUP_ALPHA, g)
        torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    else:
        lam0 = _beta(CUTMIX_ALPHA, g)
        cut = math.sqrt(1 - lam0)
        ch, cw = int(size * cut), int(size * cut)
        cy = int(torch.randint(0, size, (1,), generator=g))
        cx = int(torch.randint(0, size, (1,), generator=g))
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, size), \
            max(cx - cw // 2, 0), min(cx + cw // 2, size)
        box = torch.zeros(size, size, dtype=torch.bool)
        box[y0:y1, x0:x1] = True
        torch.testing.assert_close(mixed, torch.where(box, x[perm], x))
        lam = 1 - box.float().mean().item()
    torch.testing.assert_close(soft, lam * onehot + (1 - lam) * onehot[perm])
    assert 0.0 < lam <= 1.0


def test_core_loss_trains_on_soft_targets():
    from automl_pt.model import ClassificationTask

    task = ClassificationTask()
    logits = torch.randn(6, 3, requires_grad=True)
    hard = torch.tensor([0, 1, 2, 0, 1, 2])
    soft = torch.nn.functional.one_hot(hard, 3).float()
    params = {"label_smoothing": 0.1}
    torch.testing.assert_close(task.loss(logits, soft, params), task.loss(logits, hard, params))
    half = 0.5 * soft + 0.5 * soft.roll(1, dims=0)
    task.loss(logits, half, params).backward()
    assert torch.isfinite(logits.grad).all()


def test_training_loop_passes_targets_through_augment():
    """fine_tune hands the targets to augment and trains on what augment returns."""
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.model import Backbone, ClassificationTask, TrialModel
    from automl_pt.registry import Metric
    from automl_pt.train.training import fine_tune

    class Flat(Backbone):
        feature_dim = 3 * 4 * 4

        def encode(self, b):
            return b["pixel_values"].float().flatten(1) / 255.0

    seen = []

    def spy(b, generator):
        seen.append(b["targets"].clone())
        out = make_augment(0.0, "mixup", 2)(b, generator)
        return out

    data = batch(n=8, size=4, num_labels=2)
    model = TrialModel(Flat(), ClassificationTask().build_head(48, 2, {"dropout": 0.0}))
    fine_tune(model, ClassificationTask(), {"pixel_values": data["pixel_values"]},
              data["targets"].numpy(), {"pixel_values": data["pixel_values"]},
              data["targets"].numpy(), {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2},
              {"accuracy": Metric("accuracy", accuracy)}, "accuracy", True,
              torch.device("cpu"), 0, augment=spy)
    assert len(seen) == 2 and all(t.dtype == torch.long and len(t) == 4 for t in seen)
