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


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``, replacing what is there: the old folder is moved
    aside (to a new hidden name) first and removed last, so ``out`` is never half-written. Only
    a missing or empty folder or an automl_pt export is replaced: anything else raises
    :class:`ModelLoadError` and ``tmp`` is removed (:func:`automl_pt.rundir.check_replaceable`)."""
    from .rundir import check_replaceable

    try:
        check_replaceable(out, error=ModelLoadError)
    except ModelLoadError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = _new_dir(out, "old")
        out.rename(old / out.name)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(out: Path) -> Path:
    """A new hidden folder next to ``out`` to write an export into before :func:`swap_in` (a new
    name every time: nothing that is already there is ever removed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return _new_dir(out, "tmp")


def _new_dir(out: Path, kind: str) -> Path:
    """A folder ``.<name>.<random>.<kind>`` next to ``out`` that did not exist (made with the
    usual permissions, unlike ``tempfile.mkdtemp``'s private ones)."""
    import secrets

    while True:
        path = out.parent / f".{out.name}.{secrets.token_hex(4)}.{kind}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def export_best(study: Any, prepared: Any, ostudy: Any, runner: Any) -> dict[str, float] | None:
    """Rebuild the best trial's model, score it once on the test split, write ``best/``
    atomically (a temp folder renamed into place). Returns the test metrics (or ``None``)."""
    import torch
    from safetensors.torch import load_file, save_file

    from .model import TrialModel
    from .training import evaluate

    from .rundir import check_replaceable

    out = study.run_dir / "best"
    check_replaceable(out, "run directory's best/ folder", error=ModelLoadError)  # fail before the work
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

    tmp = staging_dir(out)
    try:
        (tmp / "backbone").mkdir()
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, out)
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
    #: the input files, where the inputs were files (a folder, a table of paths...), else None
    inputs: list[str] | None = None

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.probabilities, columns=[f"p_{n}" for n in self.label_names])
        frame.insert(0, "label", self.labels)
        frame.insert(1, "confidence", self.probabilities.max(axis=1) if len(self.labels) else [])
        if self.inputs is not None:
            frame.insert(0, "input", self.inputs)
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

    @property
    def modality(self) -> str:
        return self.task_info.modality

    def _inputs(self, inputs: Any) -> tuple[list[Any], list[str] | None]:
        """``(items, names)``: the raw inputs in order, and a name per input for the output table
        where the inputs are files (else ``None``). Accepts, for every modality: a DataFrame (the
        model's input column), a table file (CSV / TSV / JSONL / Parquet; relative paths in it
        are relative to the table), a list / tuple / Series; for text: a string, a ``.txt`` file
        (one text per line); for images and audio: one file, a folder (every image / audio file
        under it, sorted), in-memory images (numpy ``HxW[xC]`` arrays, ``NxHxWxC`` batches, PIL
        images, bytes) or waveforms (1-D float arrays at the model's sample rate, 2-D batches,
        ``(array, rate)`` pairs). Raises :class:`DataError` naming what is wrong."""
        import pandas as pd

        from .errors import DataError

        modality = self.modality
        if isinstance(inputs, (str, Path)):
            path = Path(inputs)
            if path.is_dir():
                if not self.task_info.input_is_path:
                    raise DataError(f"{path}: a folder is not a {modality} input; give a table file, "
                                    "a .txt file or a list")
                files = _media_files(path, modality)
                if not files:
                    raise DataError(f"{path}: no {modality} files in this folder (looked for "
                                    f"{modality}/* types by file extension, hidden files skipped)")
                return files, files
            if path.is_file() and path.suffix.lower() in _TABLE_SUFFIXES:
                return self._table(path)
            if path.is_file() and modality == "text" and path.suffix.lower() == ".txt":
                lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                return lines, None
            if self.task_info.input_is_path:
                if not path.is_file():
                    raise DataError(f"{path}: {modality} file not found")
                return [str(path)], [str(path)]
            return [str(inputs)], None
        if isinstance(inputs, pd.DataFrame):
            if self.input_column not in inputs.columns:
                raise DataError(f"input has no column {self.input_column!r} "
                                f"(columns: {', '.join(map(str, inputs.columns))})")
            items = inputs[self.input_column].tolist()
            return items, self._names(items)
        if isinstance(inputs, bytes):
            return [inputs], None
        if isinstance(inputs, np.ndarray) and modality in ("image", "audio"):
            single = inputs.ndim in (2, 3) if modality == "image" else inputs.ndim == 1
            return ([inputs] if single else list(inputs)), None
        if modality == "audio" and _is_waveform_pair(inputs):
            return [inputs], None
        if modality == "image" and type(inputs).__module__.startswith("PIL."):
            return [inputs], None
        items = list(inputs)
        return items, self._names(items)

    def _names(self, items: list[Any]) -> list[str] | None:
        """File names for the output table, where the inputs are all file paths."""
        if self.task_info.input_is_path and items and all(isinstance(x, (str, Path)) for x in items):
            return [str(x) for x in items]
        return None

    def _table(self, table: Path) -> tuple[list[Any], list[str] | None]:
        from .data import read_frame
        from .errors import DataError

        frame = read_frame(table, self.host.registry, {"base_dir": str(table.parent)}, "input")
        if self.input_column not in frame.columns:
            raise DataError(f"{table}: no column {self.input_column!r} (columns: "
                            f"{', '.join(map(str, frame.columns))})")
        items = frame[self.input_column].tolist()
        if self.task_info.input_is_path:
            # relative paths in a table are relative to the table's folder, as in training
            items = [str(p) if Path(str(p)).is_absolute() else str(table.parent / str(p)) for p in items]
            return items, items
        return items, None

    def predict(self, inputs: Any, batch_size: int = 64, progress: bool | None = None) -> Prediction:
        """Predict labels and probabilities (see :meth:`_inputs` for what ``inputs`` may be).
        Inputs are preprocessed and run ``batch_size`` at a time, so long inputs never sit in
        memory as tensors at once. ``progress``: a rich progress bar on stderr; ``None`` shows it
        for inputs longer than four batches."""
        import torch

        from .training import _slice, _to_device, device_autocast

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        items, names = self._inputs(inputs)
        probs = []
        starts: Any = range(0, len(items), batch_size)
        show = len(items) > 4 * batch_size if progress is None else progress and len(items) > batch_size
        bar = None
        if show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        with torch.no_grad(), (bar or _nothing()):
            task = bar.add_task("predicting", total=len(items)) if bar else None
            for start in starts:
                chunk = items[start:start + batch_size]
                enc = self.preprocessor.encode(chunk)
                batch = _to_device(self.preprocessor.collate(_slice(enc, torch.arange(len(
                    next(iter(enc.values())))))), self.device)
                with device_autocast(self.device):
                    logits = self.model(batch)
                probs.append(self.task.predict(logits)[1])
                if bar:
                    bar.advance(task, len(chunk))
        p = np.concatenate(probs) if probs else np.zeros((0, len(self.label_names)))
        return Prediction([self.label_names[i] for i in p.argmax(axis=1)], p, self.label_names,
                          names)


_TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"})


def _media_files(folder: Path, modality: str) -> list[str]:
    """Files under ``folder`` whose extension's MIME type is ``<modality>/*`` (sorted; hidden
    files and folders skipped)."""
    import mimetypes

    found = []
    for f in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(folder).parts) or not f.is_file():
            continue
        kind = mimetypes.guess_type(f.name)[0] or ""
        if kind.startswith(f"{modality}/"):
            found.append(str(f))
    return found


def _is_waveform_pair(x: Any) -> bool:
    return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray)
            and isinstance(x[1], (int, np.integer)))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def load(directory: str | Path, device: str = "cpu") -> Predictor:
    """Load an exported model (``<run dir>/best``) for prediction."""
    return Predictor(directory, device=device)


