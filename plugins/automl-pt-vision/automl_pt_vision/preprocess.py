"""Image decoding and the image preprocessor.

Every image is decoded once per study: EXIF orientation applied, grayscale / palette / RGBA /
16-bit turned into 8-bit RGB (transparency composited on white), resized so the shorter side is
``size / crop_pct`` and centre-cropped to ``size`` — timm's evaluation transform, with the
size, interpolation and crop taken from the model's pretrained config. The result is a uint8
tensor ``(N, 3, H, W)``: a quarter of the memory, cache file and host-to-device traffic of
float32. Normalisation (mean / std) happens on the device in the backbone, augmentation too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from automl_pt.errors import DataError
from automl_pt.model import Preprocessor

from .folders import IMAGE_SUFFIXES  # noqa: F401  (decodable suffixes; folders.py stays torch-free)

PIPELINE_VERSION = 1          # bump when the decoded pixels would change
MAX_LISTED = 20

_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}


def decode_workers() -> int:
    """Decoding threads: this process's torch thread count (a worker's share of the cores)."""
    return max(1, min(8, torch.get_num_threads()))


def open_image(item: Any):
    """A PIL image from a path, bytes, a PIL image or a numpy array (HxW or HxWxC)."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return Image.fromarray(item)
    if isinstance(item, (bytes, bytearray)):
        return Image.open(io.BytesIO(item))
    return Image.open(str(item))


def to_rgb(image):
    """8-bit RGB with EXIF orientation applied; alpha composited on white; 16-bit and float
    grayscale rescaled to 8 bits."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / high * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def check_image(item: Any) -> str | None:
    """Why ``item`` cannot be used as an image (``None`` when it decodes completely).

    A directory stands for an empty class folder (see :mod:`automl_pt_vision.folders`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(str(item))
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if any(not f.startswith(".") for f in files):
                return "a folder, not an image file"
        return "empty class folder (no image files in it)"
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))   # JPEG: decode at reduced scale, still reads it all
            image.load()
    except UnidentifiedImageError:
        return "not an image (unknown format)"
    except Image.DecompressionBombError as exc:
        return f"image too large: {exc}"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt or truncated image: {exc}"
    return None


class ImagePreprocessor(Preprocessor):
    """Decodes and resizes images once into ``{"pixel_values": uint8 (N, 3, H, W)}``.

    ``data_config`` is timm's resolved data config (``input_size``, ``interpolation``,
    ``crop_pct``, ``crop_mode``, ``mean``, ``std``); mean / std are recorded but applied by the
    backbone on the device.
    """

    def __init__(self, data_config: dict[str, Any], summary: str = ""):
        self._summary = summary
        self.data_config = {
            "input_size": tuple(int(v) for v in data_config["input_size"]),
            "interpolation": str(data_config.get("interpolation", "bicubic")),
            "crop_pct": float(data_config.get("crop_pct", 0.875)),
            "crop_mode": str(data_config.get("crop_mode", "center")),
            "mean": tuple(float(v) for v in data_config.get("mean", (0.485, 0.456, 0.406))),
            "std": tuple(float(v) for v in data_config.get("std", (0.229, 0.224, 0.225))),
        }
        _, self.height, self.width = self.data_config["input_size"]
        key = {k: v for k, v in self.data_config.items() if k not in ("mean", "std")}
        self.fingerprint = hashlib.sha256(
            json.dumps({"v": PIPELINE_VERSION, **key}, sort_keys=True).encode()).hexdigest()[:16]

    # -- one image ------------------------------------------------------------------------
    def decode(self, item: Any) -> np.ndarray:
        """``(H, W, 3)`` uint8 for one image, resized and cropped like timm's eval transform."""
        source = open_image(item)
        try:
            return self._resize_crop(source)
        finally:
            if source is not item:  # we opened it: close the file now, not at garbage collection
                source.close()

    def _resize_crop(self, image) -> np.ndarray:
        from PIL import Image

        target_h, target_w = self.height, self.width
        crop_pct = self.data_config["crop_pct"]
        scale_h, scale_w = int(target_h / crop_pct), int(target_w / crop_pct)
        if getattr(image, "format", None) == "JPEG":  # DCT-domain downscale: faster decode
            side = max(scale_h, scale_w)
            image.draft("RGB", (side, side))
        image = to_rgb(image)
        resample = _RESAMPLE.get(self.data_config["interpolation"], Image.BICUBIC)
        w, h = image.size
        if self.data_config["crop_mode"] != "squash" and scale_h == scale_w:
            # shorter side to scale (aspect kept), as torchvision's Resize(int)
            if w <= h:
                size = (scale_w, max(1, int(scale_w * h / w)))
            else:
                size = (max(1, int(scale_h * w / h)), scale_h)
        else:
            size = (scale_w, scale_h)
        if size != (w, h):
            image = image.resize(size, resample, reducing_gap=3.0)
        w, h = image.size
        left, top = int(round((w - target_w) / 2.0)), int(round((h - target_h) / 2.0))
        image = image.crop((left, top, left + target_w, top + target_h))
        return np.array(image, dtype=np.uint8)  # a writable copy

    def _decode_or_reason(self, item: Any) -> tuple[np.ndarray | None, str | None]:
        try:
            return self.decode(item), None
        except Exception as exc:  # reported together below
            return None, f"{type(exc).__name__}: {exc}"

    # -- the Preprocessor contract ------------------------------------------------------------
    def summary(self) -> str:
        return self._summary

    def encode(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Decode every input (threads: PIL releases the GIL while decoding and resizing).
        Raises :class:`DataError` listing every input that cannot be decoded."""
        out = np.empty((len(inputs), 3, self.height, self.width), dtype=np.uint8)
        if not len(inputs):
            return {"pixel_values": torch.from_numpy(out)}
        workers = min(decode_workers(), len(inputs))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(self._decode_or_reason, inputs, chunksize=16))
        else:
            results = [self._decode_or_reason(x) for x in inputs]
        bad = [(inputs[i], reason) for i, (_, reason) in enumerate(results) if reason]
        if bad:
            listed = "\n".join(f"  {_describe(x)}: {r}" for x, r in bad[:MAX_LISTED])
            more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
            raise DataError(f"{len(bad)} image(s) cannot be decoded:\n{listed}{more}")
        for i, (array, _) in enumerate(results):
            out[i] = array.transpose(2, 0, 1)  # numpy copies HWC -> CHW fast (torch's strided
        return {"pixel_values": torch.from_numpy(out)}  # uint8 copy was 100x slower here)

    def save(self, directory: Any) -> None:
        """Write ``preprocessor.json`` (the data config); the exported backbone's own
        ``config.json`` carries the same values, so a reload preprocesses identically."""
        path = Path(directory) / "preprocessor.json"
        path.write_text(json.dumps({"pipeline_version": PIPELINE_VERSION, **self.data_config},
                                   indent=2))


#: images whose size is read to find the data's typical size
SIZE_SAMPLE = 256


def native_image_size(inputs: Sequence[Any]) -> int | None:
    """The median shorter side, in pixels, of up to ``SIZE_SAMPLE`` images spread evenly over
    ``inputs`` (file headers only for paths), or ``None`` when none can be read."""
    n = len(inputs)
    if n == 0:
        return None
    picks = sorted({int(i * n / min(n, SIZE_SAMPLE)) for i in range(min(n, SIZE_SAMPLE))})
    sides = []
    for i in picks:
        item = inputs[i]
        try:
            if isinstance(item, np.ndarray):
                sides.append(min(item.shape[:2]))
                continue
            image = open_image(item)
            try:
                sides.append(min(image.size))
            finally:
                if image is not item:
                    image.close()
        except Exception:  # unreadable here: the data checks report it
            continue
    return int(np.median(sides)) if sides else None


def _describe(item: Any) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"<{type(item).__name__}>"
