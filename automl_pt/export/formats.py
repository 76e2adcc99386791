"""Export an exported model (``<run dir>/best``) to a folder that other tools load.

Formats are registered like everything else (``automl_pt_register_export_formats``); the core
registers, in :mod:`automl_pt.builtin.export_formats`:

* ``native``: a copy of ``best/`` (``automl_pt.load`` reads it);
* ``safetensors``: the backbone library's own folder (the first of its
  :attr:`~automl_pt.model.Backbone.library_formats`);
* ``onnx``: ``model.onnx`` from preprocessed tensors to what the task predicts (class logits,
  numbers in the target's units, per-label probabilities), dynamic batch axis (and every
  axis whose size differs between two sample batches, e.g. a text's sequence), exported with
  ``torch.onnx.export(dynamo=True)`` and checked against PyTorch with onnxruntime when it is
  installed;
* ``torchscript``: ``model.pt`` traced with ``torch.jit.trace``, checked on a second batch of
  another shape; a model whose trace does not generalise is refused with a clear error.

Plugins register the library formats their backbones write (``hf``: transformers
``save_pretrained``; ``timm``: a timm folder whose classifier *is* the head), which
:meth:`~automl_pt.model.Backbone.export_as` writes. Everything that depends on the modality
(sample inputs to trace with, axis names, preprocessing steps, the card's snippets) comes from
the :class:`ExportSupport` the backbone's plugin returns from ``automl_pt_export_support``.

Every folder also holds ``automl_pt_export.json`` (format, label names, the model's inputs and
outputs, preprocessing, study, metrics and best parameters), the preprocessing files the plugin
saves (tokenizer files, image or audio settings) and a ``README.md`` model card with a "how to
load" snippet for that format. The folder is written to a temporary sibling and renamed into
place, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .support import EXPORT_CONFIG, ExportFormatError, ExportSupport

ONNX_OPSET = 18
#: onnxruntime / traced outputs must match PyTorch's within this absolute tolerance
TOLERANCE = 1e-4


def export_support(predictor: Any) -> ExportSupport:
    """The :class:`ExportSupport` of the predictor's backbone (the base class when no plugin
    answers)."""
    backbone = predictor.model.backbone
    support = predictor.host.hook.automl_pt_export_support(backbone=backbone,
                                                            modality=predictor.task_info.modality,
                                                            task=predictor.task)
    return support if support is not None else ExportSupport()


def export_model(model_dir: str | Path, fmt: str, out: str | Path | None = None,
                 predictor: Any = None) -> Path:
    """Write the exported model ``model_dir`` (a ``best/`` folder) in format ``fmt`` to ``out``
    (default: ``<model_dir>/../export/<fmt>``, replaced if it exists). Returns the folder.

    Raises :class:`ExportFormatError` for an unknown or unsupported format, or an export whose
    outputs differ from PyTorch's; :class:`ModelLoadError` when ``model_dir`` is not a model."""
    model_dir = Path(model_dir)
    host = predictor.host if predictor is not None else None
    if host is None:
        from ..plugins import create_plugin_host

        host = create_plugin_host()
    spec = check_format(host, fmt)
    if predictor is None:
        from .predictor import load

        predictor = load(model_dir, host=host)
    out = Path(out) if out is not None else model_dir.parent / "export" / fmt
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise ExportFormatError(f"{out}: the output folder must lie outside the model folder {model_dir}")
    from ..storage.rundir import check_replaceable

    check_replaceable(out, error=ExportFormatError)   # a user's folder is never replaced
    support = export_support(predictor)
    from .predictor import staging_dir, swap_in

    tmp = staging_dir(out)
    try:
        try:  # exports trace and check on the CPU; the predictor gets its device back
            predictor.model.cpu()
            details = (spec.write(predictor, tmp) if spec.write is not None
                       else write_library(spec.name, predictor, tmp, support))
        finally:
            predictor.model.to(predictor.device)
        fmt_written = details.pop("written_as", fmt)
        if spec.with_preprocessing:
            predictor.preprocessor.save(tmp)
        config = _export_config(predictor, model_dir, fmt, fmt_written, details, support)
        (tmp / EXPORT_CONFIG).write_text(json.dumps(config, indent=2, default=str))
        from .model_card import model_card

        (tmp / "README.md").write_text(model_card(config, out.resolve(), support))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, out)
    return out


def check_format(host: Any, fmt: str) -> Any:
    """The registered :class:`~automl_pt.registry.ExportFormat` named ``fmt``;
    :class:`ExportFormatError` listing the registered ones otherwise."""
    formats = host.registry.export_formats
    if fmt not in formats:
        raise ExportFormatError(f"unknown export format {fmt!r}; choose from {', '.join(formats)}"
                                f"{host.failure_hint()}")
    return formats[fmt]


# -- sample batches and the tensor-in, outputs-out module -----------------------------------------
def _batch(predictor: Any, support: ExportSupport, n: int, seed: int) -> dict[str, Any]:
    try:
        inputs = support.sample_inputs(n, seed)
    except NotImplementedError:
        raise ExportFormatError(
            f"no sample inputs for the {predictor.task_info.modality} backbone "
            f"{predictor.model.backbone.name!r}: onnx / torchscript export traces the model on "
            "inputs that the backbone's plugin supplies (hook automl_pt_export_support)") from None
    enc = predictor.preprocessor.encode(inputs)
    return dict(support.export_tensors(dict(predictor.preprocessor.collate(enc))))


def tensor_module(model: Any, names: list[str], outputs: Any = None) -> Any:
    """An ``nn.Module`` (eval mode) whose ``forward`` takes the preprocessed tensors
    positionally, in ``names`` order, and returns the model's outputs (passed through
    ``outputs`` when given, e.g. the task's :meth:`~automl_pt.tasks.Task.export_outputs`): what
    ONNX and TorchScript need."""
    import torch

    class TensorModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out = self.model(dict(zip(names, tensors)))
            return out if outputs is None else outputs(out)

    return TensorModel().eval()


def task_module(predictor: Any, names: list[str]) -> Any:
    """The tensor module of an ``onnx`` / ``torchscript`` export: the backbone, the task's
    :meth:`~automl_pt.tasks.Task.export_head` and :meth:`~automl_pt.tasks.Task.export_outputs`,
    so the file returns what the task predicts (class logits, numbers in the target's units,
    per-label probabilities)."""
    from ..model import TrialModel

    model = TrialModel(predictor.model.backbone, predictor.task.export_head(predictor.model.head))
    return tensor_module(model.eval(), names, predictor.task.export_outputs)


def output_spec(predictor: Any) -> list[dict[str, Any]]:
    """The ``outputs`` of an ``onnx`` / ``torchscript`` export for ``automl_pt_export.json``."""
    return [{"name": predictor.task.export_output,
             "shape": predictor.task.export_shape(predictor.label_names)}]


def _dynamic_axes(a: dict[str, Any], b: dict[str, Any], support: ExportSupport
                  ) -> dict[str, dict[int, str]]:
    """Axes whose size differs between two sample batches are dynamic: the batch (first) axis
    always, and e.g. a text's sequence axis (named by the plugin: inputs that share an axis
    share its name)."""
    axes: dict[str, dict[int, str]] = {}
    for name, t in a.items():
        other = b[name]
        axes[name] = {0: "batch"}
        for d in range(1, t.dim()):
            if t.shape[d] != other.shape[d]:
                axes[name][d] = support.axis_name(name, d) or f"{name}_{d}"
    return axes


def _input_spec(batch: dict[str, Any], axes: dict[str, dict[int, str]]) -> list[dict[str, Any]]:
    return [{"name": n, "dtype": str(t.dtype).removeprefix("torch."),
             "shape": [axes[n].get(d, int(s)) for d, s in enumerate(t.shape)]}
            for n, t in batch.items()]


def _compare(what: str, got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        raise ExportFormatError(f"{what}: output shape {got.shape} differs from PyTorch's "
                                f"{want.shape} on a batch of another shape than the one exported "
                                "(the trace kept sizes of the first); try 'onnx', or 'native'")
    missing = np.isnan(want)   # positions that are no input (padding) are NaN in both
    if (np.isnan(got) != missing).any():
        raise ExportFormatError(f"{what}: outputs are NaN elsewhere than PyTorch's; try 'native'")
    got, want = got[~missing], want[~missing]
    diff = float(np.abs(got - want).max()) if want.size else 0.0
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0   # numbers in a target's units
    if not diff <= TOLERANCE * scale:
        raise ExportFormatError(f"{what}: outputs differ from PyTorch's (max difference {diff:.2e} "
                                f"> {TOLERANCE:g}); try 'onnx', or 'native'")
    return diff


def _reason(exc: BaseException) -> str:
    """The gist of an exporter's exception: torch.onnx wraps the real cause in pages of advice,
    under an "Exception summary" heading; colour codes are dropped."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1:]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:400]


# -- writers ---------------------------------------------------------------------------------------
def write_native(predictor: Any, directory: Path) -> dict[str, Any]:
    """``native``: a copy of the model folder."""
    shutil.copytree(predictor.directory, directory, dirs_exist_ok=True)
    return {"files": {"model": "automl_pt.json + backbone/ + head.safetensors"}}


def write_backbone_library(predictor: Any, directory: Path) -> dict[str, Any]:
    """``safetensors``: the backbone library's own folder (its first library format)."""
    backbone = predictor.model.backbone
    if not backbone.library_formats:
        raise ExportFormatError(f"export format 'safetensors' needs a backbone with a library "
                                f"format; {backbone.name!r} ({type(backbone).__name__}) has none")
    fmt = backbone.library_formats[0]
    return {"written_as": fmt, **write_library(fmt, predictor, directory, export_support(predictor))}


def write_library(fmt: str, predictor: Any, directory: Path, support: ExportSupport) -> dict[str, Any]:
    """A library format (``hf``, ``timm``): what :meth:`~automl_pt.model.Backbone.export_as`
    writes, plus ``head.safetensors`` when the head is not folded into the library's model."""
    from safetensors.torch import save_file

    backbone = predictor.model.backbone
    head = predictor.task.export_head(predictor.model.head)   # regression: in the target's units
    folded = backbone.export_as(fmt, directory, head, predictor.label_names)
    details: dict[str, Any] = {"head_folded": folded, "files": {"backbone": "config.json + model.safetensors"}}
    if not folded:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                  str(directory / "head.safetensors"))
        details["files"]["head"] = "head.safetensors"
        described = dict(support.describe_head(backbone))
        details["head"] = {"keys": sorted(head.state_dict()), "applied_to": described.pop("applied_to"),
                           "backbone_class": type(backbone).__name__, **described}
    support.finish_library_folder(fmt, directory, predictor.label_names, predictor.task.kind)
    return details


def write_onnx(predictor: Any, directory: Path) -> dict[str, Any]:
    """``onnx``: ``model.onnx``, checked with onnxruntime on two batches of different shapes;
    then the files the task adds next to it (:meth:`~automl_pt.tasks.Task.export_files`, e.g. a
    speech recogniser's decoder)."""
    support = export_support(predictor)
    a, b = _batch(predictor, support, 2, 0), _batch(predictor, support, 3, 1)
    names = list(a)
    axes = _dynamic_axes(a, b, support)
    module = task_module(predictor, names)
    output = predictor.task.export_output
    what = (f"the {predictor.task_info.modality} backbone {predictor.model.backbone.name!r} "
            f"({type(predictor.model.backbone).__name__})")
    worst = onnx_file(module, [a, b], names, output, axes, directory / "model.onnx", what)
    details: dict[str, Any] = {"files": {"model": "model.onnx"}, "opset": ONNX_OPSET,
                               "inputs": _input_spec(a, axes),
                               "outputs": output_spec(predictor),
                               "checked_with_onnxruntime": worst is not None}
    if worst is not None:
        details["max_abs_difference"] = worst
    return _with_task_files(details, predictor, "onnx", directory, module, a, b)


def _with_task_files(details: dict[str, Any], predictor: Any, fmt: str, directory: Path,
                     module: Any, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``details`` plus what :meth:`~automl_pt.tasks.Task.export_files` wrote (its ``files``
    merged into ``details["files"]``, the rest added); it may ask for the two sample batches'
    outputs."""
    import torch

    def sample_outputs() -> list[Any]:
        with torch.no_grad():
            return [module(*a.values()), module(*b.values())]

    extra = dict(predictor.task.export_files(predictor.model, fmt, directory, sample_outputs) or {})
    details["files"].update(extra.pop("files", {}))
    details.update(extra)
    return details


def onnx_file(module: Any, batches: list[dict[str, Any]], names: list[str], output: str,
              axes: dict[str, dict[int, str]], path: Path, what: str) -> float | None:
    """Export ``module`` (tensors in ``names`` order -> one tensor named ``output``) to ``path``
    with ``torch.onnx.export(dynamo=True)``, the ``axes`` (input -> {dim: name}) dynamic, traced
    on ``batches[0]``; then run every batch with onnxruntime and compare with PyTorch. Returns the
    largest difference, or ``None`` when onnxruntime is not installed. ``what`` names the model
    in errors. Used for the main file and for files a task adds (a decoder)."""
    import contextlib
    import inspect
    import io
    import warnings

    import torch

    dims: dict[str, Any] = {}
    shapes = []
    for n in names:
        shapes.append({d: dims.setdefault(label, torch.export.Dim(label.replace("-", "_")))
                       for d, label in axes[n].items()})
    first = batches[0]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())
    dynamic = (tuple(shapes),) if varargs else tuple(shapes)   # forward(*tensors) or forward(a, b)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(first[n] for n in names), str(path), input_names=names,
                              output_names=[output], dynamo=True, dynamic_shapes=dynamic,
                              opset_version=ONNX_OPSET, external_data=False, verbose=False)
    except ImportError as exc:
        raise ExportFormatError(f"onnx export needs the onnx and onnxscript packages: pip install "
                                f"'automl-pt[export]' ({exc})") from exc
    except Exception as exc:
        raise ExportFormatError(f"onnx export of {what} failed: {_reason(exc)}; use 'torchscript' "
                                "or 'native'") from exc
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            want = module(*(batch[n] for n in names)).float().numpy()
            got = session.run([output], {n: batch[n].numpy() for n in names})[0]
            worst = max(worst, _compare(f"onnx export of {path.name}", got, want))
    return worst


def write_torchscript(predictor: Any, directory: Path) -> dict[str, Any]:
    """``torchscript``: ``model.pt`` traced on one batch and checked on a batch of another shape."""
    import warnings

    import torch

    support = export_support(predictor)
    a, b = _batch(predictor, support, 2, 0), _batch(predictor, support, 3, 1)
    names = list(a)
    module = task_module(predictor, names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, tuple(a[n] for n in names), check_trace=False)
    except Exception as exc:
        raise ExportFormatError(f"torchscript: tracing the {predictor.task_info.modality} backbone "
                                f"{predictor.model.backbone.name!r} failed: {_reason(exc)}; use "
                                "'onnx' or 'native'") from exc
    path = directory / "model.pt"
    traced.save(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in torch 2.x
        reloaded = torch.jit.load(str(path))
    worst = 0.0
    with torch.no_grad():
        for batch in (a, b):  # b has another batch size (and text length): the trace must generalise
            tensors = tuple(batch[n] for n in names)
            try:
                got = reloaded(*tensors).float().numpy()
            except Exception as exc:
                raise ExportFormatError(f"torchscript: the traced model fails on a batch of another "
                                        f"shape ({type(exc).__name__}); use 'onnx' or 'native'") from exc
            backbone = predictor.model.backbone
            worst = max(worst, _compare(f"torchscript export of the {backbone.modality} backbone "
                                        f"{backbone.name!r} ({type(backbone).__name__})", got,
                                        module(*tensors).float().numpy()))
    details = {"files": {"model": "model.pt"}, "inputs": _input_spec(a, _dynamic_axes(a, b, support)),
               "outputs": output_spec(predictor), "max_abs_difference": worst}
    return _with_task_files(details, predictor, "torchscript", directory, module, a, b)


# -- export config ------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return None if any(i is _SKIP for i in items) else items
    if isinstance(value, dict):
        items = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _SKIP}
    return _SKIP


_SKIP = object()


def preprocessing_info(predictor: Any, support: ExportSupport) -> dict[str, Any]:
    """The preprocessor's settings (its plain-valued attributes: max_length for text; input size,
    interpolation, crop, mean / std for images; sample rate and clip length for audio), plus what
    the preprocessing does (``steps``, from the plugin's :class:`ExportSupport`)."""
    prep = predictor.preprocessor
    info = {k: v for k, v in ((k, _jsonable(v)) for k, v in vars(prep).items())
            if v is not _SKIP and not k.startswith("_")}
    for name in ("max_samples", "fingerprint"):
        value = getattr(prep, name, None)
        if isinstance(value, (int, str)):
            info[name] = value
    info["preprocessor"] = type(prep).__name__
    info["steps"] = support.preprocessing_steps
    return info


def _study_info(model_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Data summary and search space from the run directory next to ``best/`` (when it is
    there): ``study.json`` and the best trial's distributions in the Optuna storage."""
    info: dict[str, Any] = {}
    meta_path = model_dir.parent / "study.json"
    if not meta_path.is_file():
        return info
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return info
    config = meta.get("config") or {}
    data = config.get("data") or {}
    info["data"] = {"files": {k: data.get(k) for k in ("train", "validation", "test") if data.get(k)},
                    "counts": {k: v for k, v in (meta.get("data") or {}).items()
                               if k in ("train", "validation", "test", "skipped_total")}}
    info["search"] = {k: v for k, v in (config.get("search") or {}).items() if k != "space"}
    info["search"]["overrides"] = (config.get("search") or {}).get("space")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = meta.get("optuna_url")
        study = optuna.load_study(study_name=meta.get("study"), storage=url)
        trial = study.trials[int(manifest["trial"])]
        info["search"]["space"] = {name: _describe_distribution(d)
                                   for name, d in trial.distributions.items()}
        info["search"]["trials"] = len(study.trials)
    except Exception:  # storage moved or unreachable: the study file's overrides stay
        pass
    return info


def _describe_distribution(d: Any) -> str:
    import optuna.distributions as od

    if isinstance(d, od.CategoricalDistribution):
        return "one of " + ", ".join(map(str, d.choices))
    if isinstance(d, (od.FloatDistribution, od.IntDistribution)):
        return f"{d.low:g} to {d.high:g}" + (" (log)" if d.log else "") + (
            f" step {d.step:g}" if d.step not in (None, 1) else "")
    return str(d)


def task_outputs(predictor: Any) -> dict[str, Any]:
    """What the exported model predicts, for ``automl_pt_export.json`` and the card:
    ``task_kind``, and a regression's ``target`` (column, training mean and standard deviation;
    every format but ``native`` has them folded into the head's final linear layer) or a multi-label model's ``thresholds`` (label →
    the probability at which the label is predicted, tuned on validation)."""
    kind = predictor.task.kind
    out: dict[str, Any] = {"task_kind": kind}
    state = predictor.task.state()
    if kind == "regression":
        out["target"] = {"column": predictor.label_names[0], "mean": state["target_mean"],
                         "std": state["target_std"]}
    elif kind == "multilabel":
        thresholds = state.get("thresholds") or [0.5] * len(predictor.label_names)
        out["thresholds"] = dict(zip(predictor.label_names, (float(t) for t in thresholds)))
    return out


def _export_config(predictor: Any, model_dir: Path, fmt: str, fmt_written: str,
                   details: dict[str, Any], support: ExportSupport) -> dict[str, Any]:
    m = predictor.manifest
    metrics_path = model_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return {
        "format": fmt, "written_as": fmt_written, "study": m.get("study"), "task": m.get("task"),
        "modality": m.get("modality"), "backbone": m.get("backbone"),
        "backbone_source": m.get("backbone_source"), "labels": predictor.label_names,
        "input_column": m.get("input_column"), **task_outputs(predictor),
        "preprocessing": preprocessing_info(predictor, support), **details, "metric": m.get("metric"), "metrics": metrics, "params": m.get("params"),
        "trial": m.get("trial"), **_study_info(model_dir, m),
    }
