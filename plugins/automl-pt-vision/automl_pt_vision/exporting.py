"""What ``automl-pt export`` needs to know about image backbones: sample images to trace with,
the preprocessing, and the model card's snippets for the ``timm`` folder and for ``onnx`` /
``torchscript``."""

from __future__ import annotations

from typing import Any

import numpy as np

from automl_pt.export.support import ExportSupport, answer_snippet


class ImageExportSupport(ExportSupport):
    example = '["photo.png"]  # image paths'
    preprocessing_steps = ("RGB; resize the shorter side to size / crop_pct with `interpolation`; "
                           "centre-crop to input_size; uint8 CHW. mean/std normalisation happens "
                           "inside the model")

    def sample_inputs(self, n: int, seed: int) -> list[Any]:
        """Random RGB arrays of different heights."""
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, size=(40 + 8 * i, 48, 3), dtype=np.uint8) for i in range(n)]

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        if fmt != "timm":
            return None
        return (f"import timm\nimport torch\nfrom PIL import Image\n\nfolder = {where}\n"
                "model = timm.create_model(f\"local-dir:{folder}\", pretrained=True).eval()  # head = its classifier\n"
                "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))\n"
                f"images = {self.example}\n"
                "batch = torch.stack([transform(Image.open(p).convert(\"RGB\")) for p in images])\n"
                "with torch.no_grad():\n    logits = model(batch)\n"
                "names = model.pretrained_cfg[\"label_names\"]\n"
                + answer_snippet(config, "logits", "names"))

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        return ("from PIL import Image\n"
                "cfg = config[\"preprocessing\"][\"data_config\"]\n"
                "_, height, width = cfg[\"input_size\"]\n"
                "resample = {\"bilinear\": Image.BILINEAR, \"bicubic\": Image.BICUBIC}.get("
                "cfg[\"interpolation\"], Image.BICUBIC)\n\n"
                "def pixels(path):\n"
                "    image = Image.open(path).convert(\"RGB\")\n"
                "    side = int(height / cfg[\"crop_pct\"])\n"
                "    w, h = image.size\n"
                "    size = (side, max(1, int(side * h / w))) if w <= h else (max(1, int(side * w / h)), side)\n"
                "    image = image.resize(size, resample, reducing_gap=3.0)\n"
                "    left, top = round((image.width - width) / 2), round((image.height - height) / 2)\n"
                "    image = image.crop((left, top, left + width, top + height))\n"
                "    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)\n\n"
                f"images = {self.example}\n"
                "inputs = {\"pixel_values\": np.stack([pixels(p) for p in images])}\n")
