"""Contrastive views of image batches for continued pre-training (SimCLR-style).

Each view of a batch of decoded images (``pixel_values``, RGB 0-255, from the decode cache) is,
per image: a random resized crop with horizontal flip and a small rotation
(:func:`automl_pt_vision.augment.random_affine`), brightness / contrast / saturation jitter
(:func:`~automl_pt_vision.augment.random_color`) and, with probability 1/2, a Gaussian blur
whose sigma is drawn between 0.1 px and 2 % of the image side (:func:`random_blur`). All at
``augmentation_strength`` (``[pretrain.options]``, default 1). Random numbers come from the
given CPU generator, so views are reproducible for a seed; the pixel work runs on the batch's
device.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .augment import random_affine, random_color

BLUR_PROBABILITY = 0.5
MAX_SIGMA_FRACTION = 0.02  # of the image side (SimCLR: sigma 0.1-2.0 px at 224 px ≈ 1 %)


def random_blur(x: torch.Tensor, generator: torch.Generator,
                probability: float = BLUR_PROBABILITY) -> torch.Tensor:
    """Separable Gaussian blur of each image with probability ``probability`` and sigma in
    ``[0.1, MAX_SIGMA_FRACTION * side]`` pixels; ``x`` float ``(N, C, H, W)``."""
    n, c, h, w = x.shape
    side = min(h, w)
    max_sigma = max(0.1, MAX_SIGMA_FRACTION * side)
    sigma = 0.1 + (max_sigma - 0.1) * torch.rand(n, generator=generator)
    apply = torch.rand(n, generator=generator) < probability
    radius = max(1, int(3 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).float().expand(n, -1)
    kernel = torch.where(apply[:, None], kernel, identity)          # (N, K)
    kernel = kernel.repeat_interleave(c, dim=0).to(x.device, x.dtype)  # (N*C, K)
    flat = x.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)    # vertical
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)    # horizontal
    return flat.reshape(n, c, h, w)


def make_image_views(strength: float = 1.0) -> Callable:
    """``views(batch, generator) -> (a, b)`` for ``pixel_values`` batches."""
    strength = float(min(max(strength, 0.0), 1.0))

    def one(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = batch["pixel_values"].float()
        x = random_affine(x, strength, generator)
        x = random_color(x, strength, generator)
        x = random_blur(x, generator).clamp_(0.0, 255.0)
        return {**batch, "pixel_values": x.contiguous(memory_format=torch.channels_last)}

    def views(batch: dict[str, torch.Tensor], generator: torch.Generator):
        return one(batch, generator), one(batch, generator)

    return views
