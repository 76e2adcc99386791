"""One trial: build backbone + head from the trial's params, fine-tune, record everything.

:class:`TrialRunner` is what a worker runs for each Optuna trial. It keeps the per-study caches
that make trials cheap: preprocessed (tokenized / decoded) data per preprocessor, frozen
backbone features for linear-probe trials and the activations below the top ``k`` blocks for
``partial`` trials (see :mod:`automl_pt.train.partial`), in memory and on disk under ``<run dir>/cache``.
Per-epoch metrics go to ``<run dir>/trials/<n>/epochs.parquet`` (temp file + rename); workers
never open the DuckDB results file.
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
import random
import resource
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ..core.io import atomic_write_parquet, cached_tensors, save_state
from ..core.memory import memory_mb, release_memory
from ..core.seeds import seed_everything
from ..train.adapters import apply_strategy
from ..spec.config import StudyConfig
from ..spec.data import Split, StudyData
from ..model import Backbone, Preprocessor, TrialModel
from ..train.probe import fit_probe, probe_applies
from ..plugins import resolve_backbone
from ..registry import BackboneInfo, TaskInfo
from ..train.training import TrainerCallback, clone_state, fine_tune, predict_logits


MIN_MICRO_BATCH = 1
#: ``[data]`` input sizes a trial's hyperparameters may override (a list in ``[search.space]``)
SEARCHABLE_OPTIONS = ("image_size", "max_length")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _backbone_key(info: BackboneInfo, backbone: Backbone) -> str:
    """Cache key of a backbone's weights: weights other than the original ones (init =
    continued / random) get their own cached features and activations."""
    tag = getattr(backbone, "weights_tag", "")
    variant = getattr(backbone, "variant", "")  # same weights, other features (a bi-encoder)
    key = f"{info.name}|{info.source}{'|' + tag if tag else ''}{'|variant=' + variant if variant else ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class _EpochRecorder(TrainerCallback):
    """Writes the per-epoch history to Parquet after every epoch and reports to Optuna."""

    def __init__(self, runner: "TrialRunner", trial: Any, objective_metric: str):
        self.runner, self.trial, self.metric = runner, trial, objective_metric

    def on_epoch_end(self, state) -> None:
        import optuna

        self.runner.write_epochs(self.trial.number, state.history)
        self.trial.set_user_attr("history", state.history)
        if state.closed_form:  # a fitted probe's value is final, not a point of a training curve
            return
        self.trial.report(state.metrics[self.metric], state.epoch)
        # after its last epoch a trial is done: pruning it then would only throw it away
        if state.epoch < state.epochs and not state.stopped_early and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {state.epoch}")


    def on_check(self, state) -> None:
        """Part-way through a long first epoch: reported as step 0 (every trial of the study
        gets it after the same share of the same training data, whatever its batch size), so
        the ``auto`` and ``median`` pruners can stop a trial that is clearly behind already;
        Hyperband's rungs count whole epochs and are not told."""
        import optuna

        if state.closed_form or self.runner.config.search.pruner not in ("auto", "median"):
            return
        self.trial.report(state.check_metrics[self.metric], 0)
        self.trial.set_user_attr("check_metrics", state.check_metrics)
        if self.trial.should_prune():
            raise optuna.TrialPruned("pruned part-way through epoch 1")


class _FirstStep(TrainerCallback):
    """Records ``setup_s``: seconds from the trial's start to its first optimizer step (model
    load, preprocessing and feature caches, first batch): the per-trial scheduling overhead."""

    def __init__(self, trial: Any, started: float):
        self.trial, self.started, self.done = trial, started, False

    def on_step_end(self, state) -> None:
        if not self.done:
            self.done = True
            self.trial.set_user_attr("setup_s", time.time() - self.started)


class TrialRunner:
    """Runs trials of one study in this process (driver or worker)."""

    def __init__(self, config: StudyConfig, host: Any, task_info: TaskInfo, data: StudyData,
                 space: dict, device: torch.device, run_dir: Path,
                 callbacks: list[TrainerCallback] = ()):
        self.config, self.host, self.task_info, self.data = config, host, task_info, data
        self.space, self.device, self.run_dir = space, device, run_dir
        self.callbacks = list(callbacks)
        self.metric = config.study.metric or task_info.default_metric
        names = dict.fromkeys([*task_info.metrics, self.metric])  # a plugin metric may be chosen
        n_labels = len(data.label_names)
        self.metrics = {m: host.registry.metrics[m] for m in names
                        if m == self.metric or n_labels > host.registry.metrics[m].min_classes}
        direction = config.study.direction or (
            "maximize" if self.metric not in host.registry.metrics
            or host.registry.metrics[self.metric].greater_is_better else "minimize")
        self.maximize = direction == "maximize"
        self.cache_dir = run_dir / "cache"
        self._encoded: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self._features: dict[tuple[str, str, str], torch.Tensor] = {}
        self._activations: dict[tuple[str, str, str, int], dict[str, torch.Tensor]] = {}
        self._activation_bytes = 0
        self._preprocessors: dict[str, Preprocessor] = {}
        self.last_trial_number: int | None = None
        #: ``time.time()`` by which the study must end (``[study] timeout``): a trial whose
        #: estimated duration does not fit is not started (:mod:`automl_pt.engine.budget`)
        self.deadline: float | None = None
        self.data_options = {"max_length": config.data.max_length,
                             "image_size": config.data.image_size,
                             "base_dir": str(config.source.parent) if config.source else "."}
        from .pretrain import derived_options

        # sizes read from the data (e.g. images'), a model variant the task needs...
        self.derived_options = derived_options(host, task_info, data.train.inputs)
        for key, value in self.derived_options.items():
            self.data_options.setdefault(key, value)

    def options_for(self, params: dict) -> dict[str, Any]:
        """The data options for a trial: the study's, with the input sizes the trial's params
        set (``image_size`` / ``max_length`` searched in ``[search.space]``)."""
        options = dict(self.data_options)
        for key in SEARCHABLE_OPTIONS:
            if params.get(key) is not None:
                options[key] = int(params[key])
        return options

    def make_task(self) -> Any:
        """The study's task object, fitted on the training targets (class weights, target
        scaling): every model of the study (trials, soups, export) is built with one."""
        from ..tasks import make_task

        return make_task(self.task_info, self.data)

    # -- caches ---------------------------------------------------------------------------
    def load_backbone(self, name: str, params: dict) -> tuple[BackboneInfo, Backbone]:
        info = resolve_backbone(name, self.task_info.modality, self.host)
        if info is None:
            raise ValueError(f"backbone {name!r} cannot be resolved")
        backbone = info.load({"dropout": params.get("dropout"), **self.options_for(params),
                              "params": dict(params)})
        if params.get("init") == "continued":  # the [pretrain] stage's weights
            from .pretrain import load_backbone_weights

            directory = self.pretrain_checkpoint(name)
            load_backbone_weights(backbone, directory, name)
            backbone.weights_tag = f"continued:{directory.name}"
        elif params.get("init") == "random":
            backbone.weights_tag = f"random:{torch.initial_seed()}"  # drawn from the trial's seed
        return info, backbone

    def pretrain_checkpoint(self, name: str) -> Path:
        """The finished continued-pretraining directory of backbone ``name``; a clear error when
        the study has no ``[pretrain]`` or its stage has not finished for this backbone."""
        from ..errors import BackboneError
        from .pretrain import PretrainPlan

        if self.config.pretrain is None:
            raise BackboneError(f"init = 'continued' needs a [pretrain] section in the study "
                                f"({self.config.source or 'config'})")
        if getattr(self, "_pretrain_plan", None) is None:
            self._pretrain_plan = PretrainPlan(self.config, self.host, self.task_info)
            self._pretrain_plan.derived = dict(self.derived_options)
        directory = self._pretrain_plan.checkpoint(name)
        if directory is None:
            raise BackboneError(f"backbone {name!r}: no finished continued-pretraining checkpoint "
                                f"under {self._pretrain_plan.root} for the current [pretrain] "
                                "settings; run the study (it pre-trains before the trials)")
        return directory

    def preprocessor(self, backbone: Backbone, name: str, params: dict | None = None) -> Preprocessor:
        """The backbone's preprocessor, fitted on the training inputs once per backbone name
        (and input sizes the trial's ``params`` set)."""
        options = self.options_for(params or {})
        sizes = [f"{k}={options[k]}" for k in SEARCHABLE_OPTIONS if (params or {}).get(k) is not None]
        variant = getattr(backbone, "variant", "")  # e.g. a bi-encoder's own preprocessing
        key = "|".join([name, *sizes, *([f"variant={variant}"] if variant else [])])
        if key not in self._preprocessors:
            prep = self.host.hook.automl_pt_preprocessor(backbone=backbone, task=self.task_info,
                                                         options=options)
            prep = prep or backbone.preprocessor(options)
            prep.fit(self.data.train.inputs)
            self._preprocessors[key] = prep
            summary = prep.summary()
            if summary:  # the input sizes fit() chose from the data: reported once per backbone
                for cb in self.callbacks:
                    if hasattr(cb, "input_size"):
                        cb.input_size(key, summary)
        return self._preprocessors[key]

    def encoded(self, prep: Preprocessor, split: Split) -> dict[str, torch.Tensor]:
        """Preprocess a split once per (preprocessor, data); cached in memory and on disk."""
        key = (prep.fingerprint, split.fingerprint())
        if key in self._encoded:
            return self._encoded[key]
        tensors = cached_tensors(self.cache_dir / f"encoded-{key[0]}-{key[1]}.safetensors",
                                 lambda: prep.encode(split.inputs))
        if self.device.type == "cuda":
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        self._encoded[key] = tensors
        return tensors

    def features(self, info: BackboneInfo, backbone: Backbone, prep: Preprocessor,
                 split: Split) -> torch.Tensor:
        """Frozen backbone features, computed once per (backbone, preprocessor, data)."""
        key = (_backbone_key(info, backbone), prep.fingerprint, split.fingerprint())
        if key in self._features:
            return self._features[key]

        def compute() -> dict[str, torch.Tensor]:
            backbone.to(self.device).eval()
            model = TrialModel(backbone, torch.nn.Identity())
            encoded = self.encoded(prep, split)
            return {"features": predict_logits(model, encoded, self.device, 128, prep.collate,
                                               prep.lengths(encoded))}

        feats = cached_tensors(self.cache_dir / f"features-{'-'.join(key)}.safetensors", compute)["features"]
        self._features[key] = feats
        return feats

    def activations(self, info: BackboneInfo, backbone: Backbone, prep: Preprocessor,
                    split: Split, k: int) -> dict[str, torch.Tensor]:
        """Activations below the top ``k`` blocks (strategy ``partial``), computed once per
        (backbone and its weights, preprocessor, data, k) in fp16; kept in memory, or
        memory-mapped from the cache file once the process holds more than
        :data:`automl_pt.train.partial.MEMORY_FRACTION` of the available memory."""
        from ..train import partial

        key = (_backbone_key(info, backbone), prep.fingerprint, split.fingerprint(), int(k))
        if key in self._activations:
            return self._activations[key]
        path = self.cache_dir / f"activations-{'-'.join(key[:3])}-top{k}.safetensors"

        def compute() -> dict[str, torch.Tensor]:
            encoded = self.encoded(prep, split)
            return partial.compute_activations(backbone, encoded, k, self.device, 64, prep.collate,
                                               prep.lengths(encoded))

        budget = partial.MEMORY_FRACTION * partial.available_memory_bytes() - self._activation_bytes
        tensors = None
        if path.is_file() and path.stat().st_size > budget:  # never read a large file whole
            try:
                tensors = partial.mmap_safetensors(path)
            except Exception:  # torn or unreadable: computed again below
                tensors = None
        if tensors is None:
            tensors = cached_tensors(path, compute)
            if partial.nbytes(tensors) > budget:
                del tensors
                tensors = partial.mmap_safetensors(path)
            else:
                self._activation_bytes += partial.nbytes(tensors)
        self._activations[key] = tensors
        return tensors

    # -- one trial ------------------------------------------------------------------------
    def objective(self, trial: Any) -> float:
        from .search import suggest_params

        self.last_trial_number = trial.number
        params = suggest_params(trial, self.space)
        self._skip_duplicate_probe(trial, params)
        if self.deadline is not None:
            from .budget import check_time_left

            check_time_left(trial, params, self.deadline)
        return self.run_trial(trial, params)

    def _skip_duplicate_probe(self, trial: Any, params: dict) -> None:
        """Prune a ``linear_probe`` trial at once when an earlier trial fitted the same
        closed-form probe (:func:`automl_pt.engine.seeding.duplicate_probe`): it would train
        the same model again. It does not count toward the study's trials."""
        import optuna

        from .seeding import DUPLICATE_ATTR, duplicate_probe, fits_each_probe_once

        if params.get("strategy") != "linear_probe" or not fits_each_probe_once(
                self.config, self.task_info):
            return
        same = duplicate_probe(trial.study.get_trials(deepcopy=False), params, trial.number)
        if same is not None:
            trial.set_user_attr(DUPLICATE_ATTR, same)
            trial.set_user_attr("duration_s", 0.0)
            raise optuna.TrialPruned(f"same closed-form probe as trial {same}")

    def run_trial(self, trial: Any, params: dict) -> float:
        """Train one trial; on CUDA out-of-memory retry it in place with half the micro-batch
        (twice the gradient accumulation, same effective batch) down to ``MIN_MICRO_BATCH``."""
        import optuna

        self.last_trial_number = trial.number
        seed = self.config.study.seed + trial.number
        # A retried trial inherits the user attrs of the one that died: start clean.
        for key in ("error", "traceback", "state_reason", "oom_retries", "probe_l2", "probe_fit_s"):
            trial.set_user_attr(key, None)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("device", self.device_name())
        trial.set_user_attr("host", platform.node())
        trial.set_user_attr("worker_pid", os.getpid())
        started = self.trial_started_at = time.time()
        for cb in self.callbacks:
            if hasattr(cb, "trial_started"):
                cb.trial_started(trial.number, params)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.config.resources.num_threads:
            torch.set_num_threads(self.config.resources.num_threads)
        trial.set_user_attr("threads", torch.get_num_threads())
        if os.environ.get("RAYON_NUM_THREADS"):  # the tokenizers' pool, sized by the worker
            trial.set_user_attr("tokenizer_threads", int(os.environ["RAYON_NUM_THREADS"]))

        release_memory()
        trial.set_user_attr("memory_before_mb", memory_mb(self.device))
        micro = int(self.config.resources.micro_batch_size or params["batch_size"])
        micro = min(micro, int(params["batch_size"]))
        oom_retries = 0
        try:
            while True:
                try:
                    result = self._train(trial, params, seed, micro)
                    break
                except torch.cuda.OutOfMemoryError as exc:
                    self._free()
                    if micro <= MIN_MICRO_BATCH:
                        trial.set_user_attr("state_reason", "oom")
                        raise RuntimeError(f"CUDA out of memory even at micro-batch {micro}: {exc}") from exc
                    micro = max(MIN_MICRO_BATCH, micro // 2)
                    oom_retries += 1
                    trial.set_user_attr("oom_retries", oom_retries)
                    trial.set_user_attr("micro_batch_size", micro)
            trial.set_user_attr("micro_batch_size", micro)
            save_state(result.best_state, self.trial_dir(trial.number) / "model.safetensors")
            if result.epoch_soup is not None:  # averaged best epochs (automl_pt.engine.soups)
                from .soups import save_epoch_soup

                save_epoch_soup(result.epoch_soup, trial, self.trial_dir(trial.number))
            trial.set_user_attr("best_epoch", result.best_epoch)
            trial.set_user_attr("epochs_run", result.epochs_run)
            trial.set_user_attr("epochs_planned", result.epochs_planned)
            trial.set_user_attr("steps", result.steps)
            trial.set_user_attr("metrics", result.best_metrics)
            if result.validation_loss is not None:   # breaks ties on the metric (store.best_trial)
                trial.set_user_attr("validation_loss", result.validation_loss)
            trial.set_user_attr("samples_per_s", result.samples_per_s)
            value = result.best_metrics[self.metric]
            del result
            return value
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("state_reason", "interrupted")
            trial.set_user_attr("error", "interrupted (Ctrl-C / SIGTERM); retried on the next run")
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("traceback", traceback.format_exc())
            if trial.user_attrs.get("state_reason") != "oom":
                trial.set_user_attr("state_reason", "error")
            raise
        finally:
            trial.set_user_attr("duration_s", time.time() - started)
            trial.set_user_attr("peak_memory_mb", peak_memory_mb(self.device))
            release_memory()
            trial.set_user_attr("memory_after_mb", memory_mb(self.device))

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _train(self, trial: Any, params: dict, seed: int, micro: int, train_split: Split | None = None,
               keep_last: bool = False):
        """Build and fine-tune one model. ``trial = None`` (a refit): no Optuna reporting;
        ``train_split`` replaces the study's training split; ``keep_last`` keeps the last
        epoch's weights. With ``[search] soup`` on, the best epochs are averaged
        (``result.epoch_soup``, see :mod:`automl_pt.engine.soups`)."""
        from .soups import KEEP_EPOCHS, epoch_soup

        seed_everything(seed)
        train_split = train_split or self.data.train
        soup = self.config.search.soup if trial is not None else "none"
        info, backbone = self.load_backbone(params["backbone"], params)
        prep = self.preprocessor(backbone, params["backbone"], params)
        task = self.make_task()
        head = task.make_head(backbone, task.num_outputs(self.data.label_names), params)
        model = TrialModel(backbone, head)
        if params.get("dropout") is not None:
            backbone.set_dropout(float(params["dropout"]))
        adapters = apply_strategy(backbone, params)  # lora / ia3 / bitfit: freeze, inject
        strategy = self._strategy_run(backbone, params, trial)
        if strategy == "linear_probe":
            train = {"features": self.features(info, backbone, prep, train_split)}
            val = {"features": self.features(info, backbone, prep, self.data.validation)}
            collate = lambda b: b  # noqa: E731
            augment = None
            lengths = (None, None)
        elif strategy == "partial":  # the top k blocks on cached activations
            from ..train import partial

            k = partial.top_layers(backbone, params)
            if trial is not None:
                trial.set_user_attr("top_layers_trained", k)
            train = self.activations(info, backbone, prep, train_split, k)
            val = self.activations(info, backbone, prep, self.data.validation, k)
            partial.freeze_bottom(backbone, k)
            model = partial.PartialTrialModel(backbone, head, k)
            collate = partial.collate_for(backbone)
            augment = None
            # the cached rows are in the data's order: bucket them by the inputs' lengths
            lengths = (prep.lengths(self.encoded(prep, train_split)),
                       prep.lengths(self.encoded(prep, self.data.validation)))
        else:
            train = self.encoded(prep, train_split)
            val = self.encoded(prep, self.data.validation)
            collate = prep.collate
            augment = self.host.hook.automl_pt_augmentation(
                task=self.task_info, backbone=backbone, params=params,
                num_labels=len(self.data.label_names))
            lengths = (prep.lengths(train), prep.lengths(val))  # length-bucketed batches
        if trial is not None:   # after the strategy froze what it does not train
            self._record_trainable(trial, model, params)
        if prep.summary() and trial is not None:
            trial.set_user_attr("input_size", prep.summary())
        extra = [cb for cbs in self.host.hook.automl_pt_trial_callbacks(
            task=self.task_info, params=params) or [] for cb in (cbs or [])]
        recorders = ([_FirstStep(trial, self.trial_started_at), _EpochRecorder(self, trial, self.metric)]
                     if trial is not None else [])
        callbacks = [*recorders, *extra, *self.callbacks]
        try:
            if strategy == "setfit":
                return self._setfit(trial, model, task, head, backbone, params, seed, train, val,
                                    train_split, collate, lengths, callbacks)
            if params.get("strategy") == "linear_probe" and probe_applies(task, head):
                result = fit_probe(model, train["features"], train_split.labels, val["features"],
                                   self.data.validation.labels, self.metrics, self.metric,
                                   self.maximize, callbacks, task=task)
                if trial is not None:
                    trial.set_user_attr("probe_l2", result.probe.l2)
                    trial.set_user_attr("probe_fit_s", result.probe.fit_seconds)
                return result
            result = fine_tune(
                model, task, train, train_split.labels, val, self.data.validation.labels, params,
                self.metrics, self.metric, self.maximize, self.device, seed, micro_batch_size=micro,
                collate=collate, augment=augment, train_lengths=lengths[0],
                validation_lengths=lengths[1], callbacks=callbacks,
                keep_states=KEEP_EPOCHS if soup != "none" and adapters is None else 0,
                keep_last=keep_last)
            if adapters is not None:  # keep the best epoch merged: plain backbone keys, no peft
                model.load_state_dict(result.best_state)
                adapters.merge()
                result.best_state = clone_state(model)
            result.epoch_soup = epoch_soup(model, task, result, val, self.data.validation.labels,
                                           self.metrics, self.metric, self.maximize, self.device,
                                           max(micro, 64), collate, soup)
            result.top_states = []  # the soup holds what it needs; free the rest now
            return result
        finally:
            del model, backbone, head, adapters

    def _setfit(self, trial: Any, model: TrialModel, task: Any, head: Any, backbone: Backbone,
                params: dict, seed: int, train: dict, val: dict, train_split: Split, collate: Any,
                lengths: tuple, callbacks: list) -> Any:
        """Strategy ``setfit`` (:mod:`automl_pt.train.contrastive`): the backbone tuned on pairs
        of training examples, then the head fitted in closed form on its features."""
        from ..train.contrastive import contrastive_tune
        from ..train.training import predict_logits

        if self.task_info.kind != "classification" or not probe_applies(task, head):
            raise ValueError(f"strategy 'setfit' needs a single-label classification task with the "
                             f"linear head; task {self.task_info.name!r} is {self.task_info.kind}: "
                             "remove 'setfit' from [search.space] strategy")
        tuned = contrastive_tune(backbone, train, train_split.labels, params, self.device, seed, collate)
        features = TrialModel(backbone, torch.nn.Identity())
        train_f = predict_logits(features, train, self.device, 128, collate, lengths[0])
        val_f = predict_logits(features, val, self.device, 128, collate, lengths[1])
        result = fit_probe(model, train_f, train_split.labels, val_f, self.data.validation.labels,
                           self.metrics, self.metric, self.maximize, callbacks, task=task)
        if trial is not None:
            trial.set_user_attr("setfit", {**tuned, "l2": result.probe.l2})
        return result

    def _strategy_run(self, backbone: Any, params: dict, trial: Any) -> str | None:
        """The strategy the trial trains with: its ``strategy``, except that ``partial`` on a
        backbone without the split contract (e.g. from ``preset = "fast"`` on a study searching
        such a backbone) trains the whole backbone instead, recorded as the trial's
        ``strategy_run`` and said once per backbone, so the search still fine-tunes it."""
        strategy = params.get("strategy")
        if strategy != "partial":
            return strategy
        from ..train import partial

        if partial.supported(backbone):
            return strategy
        if trial is not None:
            trial.set_user_attr("strategy_run", "full")
        warned = self.__dict__.setdefault("_partial_warned", set())
        if params["backbone"] not in warned:
            warned.add(params["backbone"])
            import warnings

            warnings.warn(f"backbone {params['backbone']!r} cannot be split for strategy 'partial': "
                          "its partial trials fine-tune the whole backbone (strategy_run = full)",
                          stacklevel=2)
        return "full"

    @staticmethod
    def _record_trainable(trial: Any, model: TrialModel, params: dict) -> None:
        """User attrs ``trainable_params`` and ``trainable_pct`` (of every parameter, adapters
        included): the head alone for a linear probe, else what requires gradients now."""
        from ..train.adapters import count_parameters

        trainable, total = count_parameters(model)
        if params.get("strategy") == "linear_probe":
            trainable = count_parameters(model.head)[1]
        trial.set_user_attr("trainable_params", int(trainable))
        trial.set_user_attr("trainable_pct", 100.0 * trainable / max(total, 1))

    def trial_dir(self, number: int) -> Path:
        return self.run_dir / "trials" / f"{number:05d}"

    def write_epochs(self, number: int, history: list[dict]) -> None:
        import pandas as pd

        rows = [{"trial": number, "epoch": int(h["epoch"]), "name": k, "value": float(v)}
                for h in history for k, v in h.items() if k != "epoch"]
        atomic_write_parquet(pd.DataFrame(rows, columns=["trial", "epoch", "name", "value"]),
                             self.trial_dir(number) / "epochs.parquet")

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return "cpu"
