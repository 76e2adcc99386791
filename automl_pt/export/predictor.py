"""Export the best trial to ``<run dir>/best`` and load exported models for prediction.

An exported model directory holds:

* ``automl_pt.json``: task, modality, backbone name, label names (classes, labels, or the
  regression target's column), input column, params, metrics, and ``task_state``: what the task
  fitted or tuned that predictions need, as plain JSON numbers (a regression's target mean and
  standard deviation, a multi-label model's per-label thresholds);
* ``backbone/``: the fine-tuned backbone in its plugin's own loadable format (for transformers: a
  ``save_pretrained`` folder with config, safetensors weights and tokenizer);
* ``head.safetensors``: the task head's weights;
* ``metrics.json``: validation and test metrics of the exported trial.

:func:`load` rebuilds the model through the plugins (the backbone folder is resolved as a local
backbone), so predictions need no access to the original run directory or any hub.

Loading contract: a model folder is data, never code, whoever wrote it. Loading may read the
manifest, the weights (safetensors) and the plugin's own files in ``backbone/``; it may not

* run code the folder brings: ``trust_remote_code`` reaches the loader only from the caller
  (``load(..., trust_remote_code=True)``, ``automl-pt predict --trust-remote-code``), and the
  manifest's ``data_options`` may hold only plain preprocessing values
  (:data:`automl_pt.export.provenance.LOADER_OPTIONS`, else :class:`ModelLoadError`);
* import a module the folder names: plugins come from installed entry points and built-ins (or
  the host the caller passes), never from the manifest or the current directory;
* let another plugin load it: manifest format 2 records the plugin that wrote the backbone and
  the task (``backbone_plugin`` / ``task_plugin``: pluggy name, module, distribution, version)
  and ``backbone_class`` (module + qualname); only that plugin is asked to load ``backbone/``,
  and a different class, or a plugin that is not installed, is a :class:`ModelLoadError` naming
  the package (``pip install ...``). Format 1 folders (no provenance) load through the plugin
  that provides their task, without the class check; their ``plugins`` list is ignored.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError

MANIFEST = "automl_pt.json"
#: 2: the manifest records backbone_plugin, task_plugin and backbone_class (no "plugins" list)
FORMAT_VERSION = 2
#: batches preprocessed together by ``Predictor.predict`` (and sorted by length among themselves)
PREDICT_WINDOW_BATCHES = 16
SUPPORTED_FORMATS = (1, 2)


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``, replacing what is there: the old folder is moved
    aside (to a new hidden name) first and removed last, so ``out`` is never half-written. Only
    a missing or empty folder or an automl_pt export is replaced: anything else raises
    :class:`ModelLoadError` and ``tmp`` is removed (:func:`automl_pt.storage.rundir.check_replaceable`)."""
    from ..storage.rundir import check_replaceable

    try:
        check_replaceable(out, error=ModelLoadError)
    except ModelLoadError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    import signal

    # Ctrl-C / SIGTERM wait for the two renames: a stopped study never leaves ``out`` missing
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        if out.exists():
            old = _new_dir(out, "old")
            out.rename(old / out.name)
        tmp.rename(out)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
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


def export_best(study: Any, prepared: Any, ostudy: Any, runner: Any, score_test: bool = True,
                state: dict | None = None, validation: dict | None = None,
                source: dict | None = None) -> dict[str, float] | None:
    """Rebuild the best trial's model, score it once on the test split (unless ``score_test``
    is false: the exports a running study makes, see :mod:`automl_pt.engine.anytime`), write ``best/``
    atomically (a temp folder renamed into place). Returns the test metrics (or ``None``).
    ``state``: weights to export instead of the trial's own, in its architecture (a soup or a
    refit, :mod:`automl_pt.engine.soups`), with their ``validation`` metrics and a ``source`` recorded in
    the manifest and ``metrics.json``."""
    import torch
    from safetensors.torch import load_file, save_file

    from ..model import TrialModel
    from ..train.training import calibrate_on, evaluate

    from ..storage.rundir import check_replaceable

    out = study.run_dir / "best"
    check_replaceable(out, "run directory's best/ folder", error=ModelLoadError)  # fail before the work
    from ..storage.store import best_trial

    best = best_trial(ostudy)   # ties on the metric: the lower validation loss
    params = dict(best.params)
    weights = runner.trial_dir(best.number) / "model.safetensors"
    if state is None and not weights.exists():
        host = best.user_attrs.get("host")
        import platform

        if host and host != platform.node():
            raise ModelLoadError(f"the best trial {best.number} ran on machine {host!r}; its weights are "
                                 f"there: run 'automl-pt export' on {host} (or share the run directory)")
        raise ModelLoadError(f"weights of the best trial {best.number} are missing ({weights}); "
                             "re-run the study to retrain it")
    info, backbone = runner.load_backbone(params["backbone"], params)
    prep = runner.preprocessor(backbone, params["backbone"], params)
    task = runner.make_task()
    head = task.make_head(backbone, task.num_outputs(prepared.data.label_names), params)
    model = TrialModel(backbone, head)
    model.load_state_dict(state if state is not None else load_file(str(weights)))
    model.to(runner.device)
    val_enc = runner.encoded(prep, prepared.data.validation) if task.needs_calibration else None
    if val_enc is not None:  # decision values (multi-label thresholds) tuned on validation
        calibrate_on(task, model, val_enc, prepared.data.validation.labels, runner.device, 64,
                     prep.collate, prep.lengths(val_enc))

    test_metrics = test_predictions = test_table = None
    if prepared.data.test is not None and score_test:
        enc = runner.encoded(prep, prepared.data.test)
        test_metrics, test_pred, _ = evaluate(model, task, enc, prepared.data.test.labels,
                                              runner.metrics, runner.device, 64, prep.collate,
                                              prep.lengths(enc))
        test_predictions = (np.asarray(prepared.data.test.labels), np.asarray(test_pred))
        test_table = task.test_table(np.asarray(prepared.data.test.labels), test_pred)

    baseline = (score_baseline(study, prepared, runner, params, score_test)
                if getattr(task, "scores_baseline", False) else None)

    tmp = staging_dir(out)
    try:
        (tmp / "backbone").mkdir()
        if test_predictions is not None:  # for the report: see test_predictions_frame
            frame = task.predictions_frame(*test_predictions)
            frame = test_predictions_frame(task.kind, *test_predictions) if frame is None else frame
            inputs = prepared.data.test.inputs
            if getattr(task, "report_inputs", False) and len(frame) == len(inputs):  # Task.test_figure
                frame.insert(0, "input", [str(x) for x in inputs])
            frame.to_parquet(tmp / "test_predictions.parquet", index=False)
        if test_table is not None:  # the task's breakdown of the test scores, for the report
            (tmp / TEST_TABLE).write_text(json.dumps(
                {"title": test_table.attrs.get("title", ""), "columns": [str(c) for c in test_table.columns],
                 "rows": json.loads(test_table.to_json(orient="values"))}, indent=2))
        model.cpu()
        backbone.export(tmp / "backbone")
        prep.save(tmp / "backbone")
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors"))
        cfg = study.config
        from .provenance import class_path, plugin_provenance

        manifest = {
            "format_version": FORMAT_VERSION, "study": study.name, "task": prepared.task.name,
            "modality": prepared.task.modality, "backbone": params["backbone"],
            "backbone_source": info.source, "feature_dim": backbone.feature_dim,
            "labels": prepared.data.label_names,
            "input_column": cfg.input_column(prepared.task.input_key,
                                             prepared.task.input_key.removesuffix("_column")),
            **({"input_columns": cfg.input_columns(prepared.task)}
               if prepared.task.extra_input_keys else {}),
            "data_options": {"max_length": runner.options_for(params).get("max_length")},
            "backbone_plugin": plugin_provenance(runner.host, info.plugin),
            "task_plugin": plugin_provenance(runner.host, prepared.task.plugin),
            "backbone_class": class_path(backbone),
            "params": params, "trial": best.number, "metric": prepared.metric,
            "task_kind": task.kind, "task_state": task.state(),
        }
        metrics = {"validation": best.user_attrs.get("metrics"), "test": test_metrics,
                   "objective": {prepared.metric: best.value}}
        if baseline is not None:   # the pretrained model, before fine-tuning
            metrics["baseline"] = baseline
        if source is not None:   # a soup or a refit of the best trial's configuration
            manifest["source"] = source
            metrics["source"] = source
            if validation is not None:
                metrics["validation"] = validation
                metrics["objective"] = {prepared.metric: validation.get(prepared.metric)}
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


#: the task's table of test scores by group (:meth:`automl_pt.tasks.Task.test_table`) in ``best/``
TEST_TABLE = "test_table.json"
#: the untrained model's scores per backbone, cached in the run directory
BASELINE_FILE = "baseline.json"


def score_baseline(study: Any, prepared: Any, runner: Any, params: dict,
                   score_test: bool = True) -> dict[str, Any] | None:
    """The pretrained backbone of ``params`` with the task's head, untrained, scored on
    validation and (``score_test``) test: ``{"backbone", "validation", "test"}``, or ``None``
    where the task says such a model predicts nothing meaningful
    (:meth:`automl_pt.tasks.Task.scores_zero_shot`). Computed once per backbone and split and
    kept in the run directory (``baseline.json``), so a study that exports ``best/`` after
    every improvement pays for it once."""
    from ..core.io import atomic_json
    from ..train.training import evaluate

    path = study.run_dir / BASELINE_FILE
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    name = str(params["backbone"])
    entry = cache.get(name) or {}
    splits = [("validation", prepared.data.validation)]
    if score_test and prepared.data.test is not None:
        splits.append(("test", prepared.data.test))
    if entry.get("zero_shot") is False:
        return None
    if all(k in entry for k, _ in splits):
        return {"backbone": name, **{k: entry[k] for k in ("validation", "test") if k in entry}}
    from ..model import TrialModel

    base_params = {**params, "init": "pretrained"}
    _, backbone = runner.load_backbone(name, base_params)
    prep = runner.preprocessor(backbone, name, base_params)
    task = runner.make_task()
    head = task.make_head(backbone, task.num_outputs(prepared.data.label_names), base_params)
    if not task.scores_zero_shot(head):
        cache[name] = {"zero_shot": False}
        atomic_json(path, cache)
        return None
    model = TrialModel(backbone, head).to(runner.device)
    for key, split in splits:
        if key not in entry:
            enc = runner.encoded(prep, split)
            entry[key] = evaluate(model, task, enc, split.labels, runner.metrics, runner.device, 16,
                                  prep.collate, prep.lengths(enc))[0]
    cache[name] = entry
    atomic_json(path, cache)
    del model
    return {"backbone": name, **{k: entry[k] for k in ("validation", "test") if k in entry}}


def test_predictions_frame(kind: str, true: np.ndarray, pred: np.ndarray):
    """The best model's test predictions as the report reads them (``test_predictions.parquet``):
    label indices ``true`` / ``pred`` (classification), numbers (regression), or one row per
    example and label with 0/1 ``true`` / ``pred`` and the ``label`` index (multi-label), or,
    where targets are a list of items per example (``(examples, items, values)``), the true and
    predicted items of each example as JSON (``true_items``, ``pred_items``; no figure)."""
    import pandas as pd

    if kind == "regression":
        return pd.DataFrame({"true": true.astype("float64"), "pred": pred.astype("float64")})
    if true.ndim == 3:  # a list of items per example (rows of numbers, NaN-padded): JSON per example
        import json

        def items(a: np.ndarray) -> list[str]:
            return [json.dumps([[round(float(v), 5) for v in r] for r in x if np.isfinite(r).all()])
                    for x in a]

        return pd.DataFrame({"true_items": items(true), "pred_items": items(pred)})
    if pred.dtype == object:  # a prediction per position (a tag per word): one row per word
        pairs = [(int(t), int(p)) for row, seq in zip(true, pred)
                 for t, p in zip(row, np.asarray(seq)) if t >= 0]
        return pd.DataFrame({"true": np.array([t for t, _ in pairs], dtype="int64"),
                             "pred": np.array([p for _, p in pairs], dtype="int64")})
    if kind == "multilabel":
        n, k = true.shape
        return pd.DataFrame({"example": np.repeat(np.arange(n), k), "label": np.tile(np.arange(k), n),
                             "true": true.reshape(-1).astype("int64"), "pred": pred.reshape(-1).astype("int64")})
    return pd.DataFrame({"true": true.astype("int64"), "pred": pred.astype("int64")})


@dataclass
class Prediction:
    """What :meth:`Predictor.predict` returns, one entry per input, by the model's task kind:

    * classification: ``labels[i]`` is the predicted label, ``probabilities[i, j]`` the
      probability of ``label_names[j]``;
    * multi-label: ``labels[i]`` is the list of predicted labels (each whose probability passed
      its tuned threshold), ``probabilities[i, j]`` the probability of ``label_names[j]``;
    * regression: ``labels[i]`` (and :attr:`values`) is the predicted number;
      ``probabilities`` is ``None`` and ``label_names`` holds the target's name.
    """

    labels: list
    probabilities: np.ndarray | None
    label_names: list[str]
    #: the input files, where the inputs were files (a folder, a table of paths...), else None
    inputs: list[str] | None = None
    kind: str = "classification"

    @property
    def values(self) -> np.ndarray:
        """The predicted numbers of a regression model (``float64``)."""
        if self.kind != "regression":
            raise TypeError(f"a {self.kind} model predicts labels, not numbers; use .labels")
        return np.asarray(self.labels, dtype=np.float64)

    def to_frame(self):
        """One row per input: ``label`` and ``confidence`` plus a ``p_<label>`` column per label
        (classification), ``labels`` (joined by ``|``) plus ``p_<label>`` (multi-label),
        ``prediction`` (regression), or a column per key where the task decodes each input to a
        record (a dict); ``input`` first where the inputs were files."""
        import pandas as pd

        if self.kind == "regression":
            frame = pd.DataFrame({"prediction": np.asarray(self.labels, dtype=np.float64)})
        elif self.kind == "token_classification":
            frame = pd.DataFrame({"tags": [x["tags"] for x in self.labels],
                                  "entities": [x["entities"] for x in self.labels]})
        elif self.labels and isinstance(self.labels[0], dict):
            # a task that decodes each input to a record (lists of found items...): a column per key
            frame = pd.DataFrame({k: [x[k] for x in self.labels] for k in self.labels[0]})
        elif self.probabilities is None:   # one output per input, no scores (a transcript)
            frame = pd.DataFrame({"prediction": [str(x) for x in self.labels]})
        else:
            frame = pd.DataFrame(self.probabilities, columns=[f"p_{n}" for n in self.label_names])
            if self.kind == "multilabel":
                frame.insert(0, "labels", ["|".join(x) for x in self.labels])
            else:
                frame.insert(0, "label", self.labels)
                frame.insert(1, "confidence", self.probabilities.max(axis=1) if len(self.labels) else [])
        if self.inputs is not None:
            frame.insert(0, "input", self.inputs)
        return frame

    def __len__(self) -> int:
        return len(self.labels)


class Predictor:
    """An exported model ready to predict. Create with :func:`automl_pt.load`.

    ``host``: the plugin host to load with (default: installed entry points and built-ins; never
    modules named by the folder). ``trust_remote_code``: the caller's permission for the backbone
    loader to run code shipped in the folder (off by default; never read from the folder).
    Raises :class:`ModelLoadError` (see the module's loading contract)."""

    def __init__(self, directory: str | Path, device: str = "cpu", host: Any = None,
                 trust_remote_code: bool = False):
        import torch
        from safetensors.torch import load_file

        from ..model import TrialModel
        from ..plugins import create_plugin_host
        from .provenance import installed_plugin, loader_options

        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise ModelLoadError(f"{self.directory}: not an exported automl_pt model (no {MANIFEST})")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{manifest_path}: corrupt manifest: {exc}") from exc
        m = self.manifest
        _check_manifest(m, manifest_path)
        if m.get("format_version") not in SUPPORTED_FORMATS:
            raise ModelLoadError(f"{manifest_path}: format_version {m.get('format_version')!r} is not "
                                 f"supported (expected {' or '.join(map(str, SUPPORTED_FORMATS))})")
        options = loader_options(m.get("data_options"), manifest_path, self.directory, trust_remote_code)
        self.host = host or create_plugin_host()
        # the plugin that wrote the task must be here (else: name the package to install)
        task_plugin = (installed_plugin(self.host, m.get("task_plugin"), "task_plugin", manifest_path)
                       if m["format_version"] >= 2 else None)
        registry = self.host.registry
        if m["task"] not in registry.tasks:
            raise ModelLoadError(f"{manifest_path}: task {m['task']!r} is not provided by any installed "
                                 f"plugin{self.host.failure_hint()}")
        self.task_info = registry.tasks[m["task"]]
        self.label_names: list[str] = list(m["labels"])
        backbone = _load_backbone(self.host, m, self.directory, self.task_info, task_plugin, options)
        self.preprocessor = (self.host.hook.automl_pt_preprocessor(
            backbone=backbone, task=self.task_info, options=options) or backbone.preprocessor(options))
        self.task = self.task_info.create()
        task_state = m.get("task_state") or {}
        if not isinstance(task_state, dict):
            raise ModelLoadError(f"{manifest_path}: key 'task_state' must be an object; re-export the model")
        self.task.load_state(task_state, str(manifest_path))
        head = self.task.make_head(backbone, self.task.num_outputs(self.label_names), m.get("params", {}))
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
    def input_columns(self) -> list[str]:
        """Every column the model reads (a sentence-pair model: two), ``input_column`` first."""
        return list(self.manifest.get("input_columns") or [self.input_column])

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
        ``(array, rate)`` pairs).

        Inputs are checked before anything is predicted, as training checks its data: tables
        must have no empty values (1-based data rows are named); a text model takes only
        non-empty strings and refuses file names it would otherwise read as texts (an existing
        image / audio / other non-table file, or a lone string such as ``x.csv`` naming no file);
        image and audio files must pass the task's ``check_input`` (the reasons training gives).
        A table file without rows warns (:class:`DataWarning`) and predicts nothing. Raises
        :class:`DataError` naming every offending row or item (``inputs[i]``, counted from 0)."""
        from ..spec.inputs import InputReader

        return InputReader(self.task_info, self.input_column, self.host.registry,
                           self.input_columns).read(inputs)

    def predict(self, inputs: Any, batch_size: int = 64, progress: bool | None = None,
                **options: Any) -> Prediction:
        """Predict labels and probabilities, label sets or numbers, as the model's task decodes
        them (see :class:`Prediction`; :meth:`_inputs` for what ``inputs`` may be).
        Inputs are preprocessed ``PREDICT_WINDOW_BATCHES`` batches at a time, so long inputs
        never sit in memory as tensors at once; within a window, where the preprocessor reports
        lengths, batches are formed in order of length (less padding) and the results come back
        in the order of the inputs. ``progress``: a rich progress bar on stderr; ``None`` shows it
        for inputs longer than four batches. ``options``: the task's prediction options
        (:attr:`automl_pt.tasks.Task.predict_options`, e.g. a speech recogniser's beam size
        ``num_beams``); ``ValueError`` naming the task's options for any other."""
        import torch

        from ..train.training import predict_logits

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.task.set_predict_options(self.model.head, options)
        items, names = self._inputs(inputs)
        preds, probs = [], []
        starts: Any = range(0, len(items), batch_size * PREDICT_WINDOW_BATCHES)
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
                # a window of batches is preprocessed at once and run sorted by length
                chunk = items[start:start + batch_size * PREDICT_WINDOW_BATCHES]
                enc = self.preprocessor.encode(chunk)
                logits = predict_logits(self.model, enc, self.device, batch_size,
                                        self.preprocessor.collate, self.preprocessor.lengths(enc),
                                        on_batch=(lambda n: bar.advance(task, n)) if bar else None)
                pred, prob = self.task.predict(logits)
                preds.append(np.asarray(pred))
                probs.append(prob)
        kind = self.task.kind
        if not preds:
            return Prediction([], None if kind == "regression" else np.zeros((0, len(self.label_names))),
                              self.label_names, names, kind)
        pred = np.concatenate(preds)
        prob = None if probs[0] is None else np.concatenate(probs)
        if getattr(self.task, "decode_reads_inputs", False):  # e.g. entity spans quote the words
            return Prediction(self.task.decode(pred, prob, self.label_names, inputs=items), prob,
                              self.label_names, names, kind)
        return Prediction(self.task.decode(pred, prob, self.label_names), prob, self.label_names,
                          names, kind)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _load_backbone(host: Any, m: dict[str, Any], directory: Path, task_info: Any,
                   task_plugin: str | None, options: dict[str, Any]) -> Any:
    """Load ``directory/backbone`` through the one plugin that wrote it. Format 2: the manifest's
    ``backbone_plugin``; ``task_plugin`` (the installed plugin the manifest's ``task_plugin``
    names) must be the one providing the task, and the loaded class must be the recorded
    ``backbone_class``. Format 1 (``task_plugin`` None): the plugin that provides the task."""
    from .provenance import check_backbone_class, installed_plugin

    where = directory / MANIFEST
    if task_plugin is not None:
        if task_info.plugin != task_plugin:
            raise ModelLoadError(f"{where}: plugin {task_plugin!r}, which wrote this model, does not "
                                 f"provide task {m['task']!r} (installed: from plugin {task_info.plugin!r})")
        plugin = installed_plugin(host, m.get("backbone_plugin"), "backbone_plugin", where)
    else:
        plugin = task_info.plugin
    info = host.resolve_backbone(str(directory / "backbone"), task_info.modality, only=plugin)
    if info is None:
        raise ModelLoadError(f"{directory / 'backbone'}: plugin {plugin!r}, which wrote this model, "
                             f"cannot load it as a {task_info.modality} backbone{host.failure_hint()}")
    backbone = info.load(options)
    if task_plugin is not None:
        check_backbone_class(backbone, m, plugin, where)
    return backbone


def _check_manifest(m: Any, path: Path) -> None:
    """:class:`ModelLoadError` naming the key when the manifest lacks one loading needs or has
    one of the wrong type (a hand-edited or truncated manifest is bad input, not a crash)."""
    if not isinstance(m, dict):
        raise ModelLoadError(f"{path}: the manifest is a JSON {type(m).__name__}, not an object")
    for key, kind in (("task", str), ("modality", str), ("labels", list), ("input_column", str)):
        if not isinstance(m.get(key), kind):
            problem = "missing" if key not in m else f"not a {kind.__name__}: {m[key]!r}"
            raise ModelLoadError(f"{path}: key {key!r} is {problem}; re-export the model")
    cols = m.get("input_columns")
    if cols is not None and (not isinstance(cols, list) or not cols or cols[0] != m["input_column"]
                             or not all(isinstance(c, str) and c for c in cols)):
        raise ModelLoadError(f"{path}: key 'input_columns' must be a list of column names starting "
                             f"with input_column {m['input_column']!r}; re-export the model")
    if not m["labels"] or not all(isinstance(x, str) for x in m["labels"]):
        raise ModelLoadError(f"{path}: key 'labels' must be a non-empty list of label names")
    if not isinstance(m.get("params", {}), dict):
        raise ModelLoadError(f"{path}: key 'params' must be an object")


def load(directory: str | Path, device: str = "cpu", *, trust_remote_code: bool = False,
         host: Any = None) -> Predictor:
    """Load an exported model (``<run dir>/best``) for prediction. ``trust_remote_code=True``
    lets the backbone loader run code shipped in the folder (transformers ``auto_map``): only
    for folders you trust; nothing in the folder can turn it on. ``host``: the plugin host to
    load with (default: installed plugins). Raises :class:`ModelLoadError`."""
    return Predictor(directory, device=device, host=host, trust_remote_code=trust_remote_code)


