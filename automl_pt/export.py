"""Export the best trial to ``<run dir>/best`` and load exported models for prediction.

An exported model directory holds:

* ``automl_pt.json``: task, modality, backbone name, label names, input column, params, metrics;
* ``backbone/``: the fine-tuned backbone in its plugin's own loadable format (for transformers: a
  ``save_pretrained`` folder with config, safetensors weights and tokenizer);
* ``head.safetensors``: the task head's weights;
* ``metrics.json``: validation and test metrics of the exported trial.

:func:`load` rebuilds the model through the plugins (the backbone folder is resolved as a local
backbone), so predictions need no access to the original run directory or any hub.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError

MANIFEST = "automl_pt.json"
FORMAT_VERSION = 1


def export_best(study: Any, prepared: Any, ostudy: Any, runner: Any) -> dict[str, float] | None:
    """Rebuild the best trial's model, score it once on the test split, write ``best/``
    atomically (a temp folder renamed into place). Returns the test metrics (or ``None``)."""
    import torch
    from safetensors.torch import load_file, save_file

    from .model import TrialModel
    from .training import evaluate

    best = ostudy.best_trial
    params = dict(best.params)
    weights = runner.trial_dir(best.number) / "model.safetensors"
    if not weights.exists():
        host = best.user_attrs.get("host")
        import platform

        if host and host != platform.node():
            raise ModelLoadError(f"the best trial {best.number} ran on machine {host!r}; its weights are "
                                 f"there: run 'automl-pt export' on {host} (or share the run directory)")
        raise ModelLoadError(f"weights of the best trial {best.number} are missing ({weights}); "
                             "re-run the study to retrain it")
    info, backbone = runner.load_backbone(params["backbone"], params)
    prep = runner.preprocessor(backbone, params["backbone"])
    task = prepared.task.create()
    head = task.build_head(backbone.feature_dim, len(prepared.data.label_names), params)
    model = TrialModel(backbone, head)
    model.load_state_dict(load_file(str(weights)))
    model.to(runner.device)

    test_metrics = test_predictions = None
    if prepared.data.test is not None:
        enc = runner.encoded(prep, prepared.data.test)
        test_metrics, test_pred, _ = evaluate(model, task, enc, prepared.data.test.labels,
                                              runner.metrics, runner.device, 64, prep.collate)
        test_predictions = (np.asarray(prepared.data.test.labels), np.asarray(test_pred))

    out = study.run_dir / "best"
    tmp = study.run_dir / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "backbone").mkdir(parents=True)
    if test_predictions is not None:  # for the report's confusion matrix: label indices
        import pandas as pd

        true, pred = test_predictions
        pd.DataFrame({"true": true.astype("int64"), "pred": pred.astype("int64")}).to_parquet(
            tmp / "test_predictions.parquet", index=False)
    model.cpu()
    backbone.export(tmp / "backbone")
    prep.save(tmp / "backbone")
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors"))
    cfg = study.config
    manifest = {
        "format_version": FORMAT_VERSION, "study": study.name, "task": prepared.task.name,
        "modality": prepared.task.modality, "backbone": params["backbone"],
        "backbone_source": info.source, "feature_dim": backbone.feature_dim,
        "labels": prepared.data.label_names,
        "input_column": cfg.input_column(prepared.task.input_key,
                                         prepared.task.input_key.removesuffix("_column")),
        "data_options": {"max_length": cfg.data.max_length}, "plugins": cfg.study.plugins,
        "params": params, "trial": best.number, "metric": prepared.metric,
    }
    metrics = {"validation": best.user_attrs.get("metrics"), "test": test_metrics,
               "objective": {prepared.metric: best.value}}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    old = study.run_dir / ".best.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return test_metrics


@dataclass
class Prediction:
    """``labels[i]`` is the predicted label of input ``i``; ``probabilities[i, j]`` the
    probability of ``label_names[j]``."""

    labels: list[str]
    probabilities: np.ndarray
    label_names: list[str]

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.probabilities, columns=[f"p_{n}" for n in self.label_names])
        frame.insert(0, "label", self.labels)
        frame.insert(1, "confidence", self.probabilities.max(axis=1) if len(self.labels) else [])
        return frame

    def __len__(self) -> int:
        return len(self.labels)


class Predictor:
    """An exported model ready to predict. Create with :func:`automl_pt.load`."""

    def __init__(self, directory: str | Path, device: str = "cpu", host: Any = None):
        import torch
        from safetensors.torch import load_file

        from .model import TrialModel
        from .plugins import create_plugin_host

        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise ModelLoadError(f"{self.directory}: not an exported automl_pt model (no {MANIFEST})")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{manifest_path}: corrupt manifest: {exc}") from exc
        m = self.manifest
        if m.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(f"{manifest_path}: format_version {m.get('format_version')!r} is not "
                                 f"supported (expected {FORMAT_VERSION})")
        self.host = host or create_plugin_host(extra=m.get("plugins") or [])
        registry = self.host.registry
        if m["task"] not in registry.tasks:
            raise ModelLoadError(f"{manifest_path}: task {m['task']!r} is not provided by any installed "
                                 f"plugin{self.host.failure_hint()}")
        self.task_info = registry.tasks[m["task"]]
        self.label_names: list[str] = list(m["labels"])
        options = {**(m.get("data_options") or {}), "base_dir": str(self.directory)}
        info = self.host.hook.automl_pt_resolve_backbone(name=str(self.directory / "backbone"),
                                                         modality=m["modality"])
        if info is None:
            raise ModelLoadError(f"{self.directory / 'backbone'}: no installed plugin can load this "
                                 f"{m['modality']} backbone{self.host.failure_hint()}")
        backbone = info.load(options)
        self.preprocessor = (self.host.hook.automl_pt_preprocessor(
            backbone=backbone, task=self.task_info, options=options) or backbone.preprocessor(options))
        self.task = self.task_info.create()
        head = self.task.build_head(backbone.feature_dim, len(self.label_names), m.get("params", {}))
        try:
            head.load_state_dict(load_file(str(self.directory / "head.safetensors")))
        except Exception as exc:
            raise ModelLoadError(f"{self.directory / 'head.safetensors'}: cannot load head weights: {exc}") from exc
        self.device = torch.device(device)
        self.model = TrialModel(backbone, head).to(self.device).eval()

    @property
    def input_column(self) -> str:
        return self.manifest["input_column"]

    def _inputs(self, inputs: Any) -> list[Any]:
        import pandas as pd

        if isinstance(inputs, (str, Path)) and Path(inputs).is_file() and self.task_info.modality == "text":
            inputs = Path(inputs)
        if isinstance(inputs, Path):
            from .data import read_frame

            table = inputs
            inputs = read_frame(inputs, self.host.registry, {"base_dir": str(inputs.parent)}, "input")
            if self.task_info.input_is_path and self.input_column in inputs.columns:
                # relative paths in a table are relative to the table's folder, as in training
                inputs[self.input_column] = [str(p) if Path(str(p)).is_absolute() else
                                             str(table.parent / str(p)) for p in inputs[self.input_column]]
        if isinstance(inputs, pd.DataFrame):
            if self.input_column not in inputs.columns:
                raise ModelLoadError(f"input has no column {self.input_column!r} "
                                     f"(columns: {', '.join(map(str, inputs.columns))})")
            return inputs[self.input_column].tolist()
        if isinstance(inputs, (str, bytes)):
            return [inputs]
        return list(inputs)

    def predict(self, inputs: Any, batch_size: int = 64, progress: bool = False) -> Prediction:
        """Predict labels and probabilities for a list of inputs, a DataFrame (the model's input
        column) or a table file path."""
        import torch

        from .training import _slice, _to_device, device_autocast

        items = self._inputs(inputs)
        probs = []
        starts = range(0, len(items), batch_size)
        if progress and len(items) > batch_size:
            from rich.console import Console
            from rich.progress import track

            starts = track(starts, description="predicting", console=Console(stderr=True))
        with torch.no_grad():
            for start in starts:
                enc = self.preprocessor.encode(items[start:start + batch_size])
                batch = _to_device(self.preprocessor.collate(_slice(enc, torch.arange(len(
                    next(iter(enc.values())))))), self.device)
                with device_autocast(self.device):
                    logits = self.model(batch)
                probs.append(self.task.predict(logits)[1])
        p = np.concatenate(probs) if probs else np.zeros((0, len(self.label_names)))
        return Prediction([self.label_names[i] for i in p.argmax(axis=1)], p, self.label_names)


def load(directory: str | Path, device: str = "cpu") -> Predictor:
    """Load an exported model (``<run dir>/best``) for prediction."""
    return Predictor(directory, device=device)


