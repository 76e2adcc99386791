"""Batched image augmentation on the device, driven by two hyperparameters.

``augmentation_strength`` ``s`` in ``[0, 1]`` scales every random transform (0 = none):

* geometry, one ``affine_grid`` + ``grid_sample`` per batch: random-resized crop keeping
  ``1 - 0.7 s`` to 100 % of the area at aspect ratios within ``(3/4, 4/3) ** s``, horizontal flip
  (probability ``0.5`` once ``s > 0``), rotation within ``±15 s`` degrees;
* colour, TrivialAugment-style magnitudes: brightness, contrast and saturation factors within
  ``1 ± 0.4 s``.

``mixup`` is ``none``, ``mixup`` (Beta(0.2, 0.2) blend of image pairs) or ``cutmix`` (a box
from another image, Beta(1, 1) area); both turn the batch's ``targets`` into soft targets
``(batch, num_labels)``, which the classification loss accepts.

Random numbers come from the trial's CPU generator (reproducible for a seed); the pixel work
runs where the batch is (the GPU in a GPU study), on ``pixel_values`` in 0-255.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

MIX_CHOICES = ("none", "mixup", "cutmix")
MIXUP_ALPHA = 0.2
CUTMIX_ALPHA = 1.0
MAX_ROTATION_DEG = 15.0
MIN_AREA_AT_FULL_STRENGTH = 0.3
COLOR_RANGE = 0.4


def _uniform(n: int, low: torch.Tensor | float, high: torch.Tensor | float,
             generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_affine(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random-resized crop + flip + rotation as one batched affine warp (bilinear, reflected
    borders); ``x`` is float ``(N, C, H, W)``."""
    n = x.shape[0]
    area = _uniform(n, 1.0 - (1.0 - MIN_AREA_AT_FULL_STRENGTH) * strength, 1.0, generator)
    log_ratio = _uniform(n, -math.log(4 / 3) * strength, math.log(4 / 3) * strength, generator)
    ratio = torch.exp(log_ratio)
    w = torch.sqrt(area * ratio).clamp(max=1.0)     # crop size as a fraction of the image
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = _uniform(n, -(1.0 - w), 1.0 - w, generator)  # crop centre in [-1, 1] coordinates
    cy = _uniform(n, -(1.0 - h), 1.0 - h, generator)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    angle = _uniform(n, -1.0, 1.0, generator) * math.radians(MAX_ROTATION_DEG) * strength
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([w * flip * cos, -h * sin, cx], dim=1),
        torch.stack([w * flip * sin, h * cos, cy], dim=1),
    ], dim=1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_color(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter; ``x`` float RGB 0-255 ``(N, 3, H, W)``."""
    n = x.shape[0]
    span = COLOR_RANGE * strength
    factors = _uniform(3 * n, 1.0 - span, 1.0 + span, generator).view(3, n, 1, 1, 1)
    factors = factors.to(x.device, x.dtype)
    x = x * factors[0]
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors[1] + mean
    if x.shape[1] == 3:
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = (x - gray) * factors[2] + gray
    return x.clamp_(0.0, 255.0)


def _beta(alpha: float, generator: torch.Generator) -> float:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(x: torch.Tensor, targets: torch.Tensor, num_labels: int, kind: str,
        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of each image with a random partner; returns images and soft targets."""
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator).to(x.device)
    if targets.dtype.is_floating_point:
        soft = targets
    else:
        soft = F.one_hot(targets.long(), num_labels).to(torch.float32)
    if kind == "mixup":
        lam = _beta(MIXUP_ALPHA, generator)
        x = x * lam + x[perm] * (1.0 - lam)
    else:
        lam = _beta(CUTMIX_ALPHA, generator)
        height, width = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(height * cut), int(width * cut)
        cy = int(torch.randint(0, height, (1,), generator=generator))
        cx = int(torch.randint(0, width, (1,), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, height)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, width)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)  # the box actually pasted
    return x, soft * lam + soft[perm] * (1.0 - lam)


def make_augment(strength: float, mixing: str, num_labels: int) -> Callable | None:
    """The ``augment(batch, generator)`` for one trial, or ``None`` when it would do nothing."""
    strength = float(min(max(strength, 0.0), 1.0))
    if mixing not in MIX_CHOICES:
        raise ValueError(f"mixup must be one of {', '.join(MIX_CHOICES)}, got {mixing!r}")
    if strength == 0.0 and mixing == "none":
        return None

    def augment(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = batch["pixel_values"].float()
        if strength > 0.0:
            x = random_affine(x, strength, generator)
            x = random_color(x, strength, generator)
        out = dict(batch)
        if mixing != "none" and "targets" in batch and x.shape[0] > 1:
            x, out["targets"] = mix(x, batch["targets"], num_labels, mixing, generator)
        out["pixel_values"] = x.contiguous(memory_format=torch.channels_last)
        return out

    return augment
