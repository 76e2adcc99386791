"""The hooks a plugin can implement. Every hook is prefixed ``automl_pt_``.

A plugin is a module (or object) with functions decorated by :data:`automl_pt.hookimpl`, exposed
through the ``automl_pt`` entry-point group::

    [project.entry-points.automl_pt]
    myplugin = "my_package.plugin"

Registration hooks receive a :class:`~automl_pt.registry.Registry` named ``register``.
Construction hooks are ``firstresult``: return ``None`` when the request is not yours.
Per-batch and per-epoch events are not hooks: see :class:`automl_pt.train.training.TrainerCallback`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .spec.config import StudyConfig
    from .registry import BackboneInfo, Param, Registry, TaskInfo

hookspec = pluggy.HookspecMarker("automl_pt")


# -- registration ---------------------------------------------------------------------------
@hookspec
def automl_pt_register_tasks(register: "Registry") -> None:
    """Register tasks with ``register.task(TaskInfo(...))``.

    A task names its modality (``text``, ``image``, ``audio``), the ``[data]`` key of its input
    column, its metrics, and a ``create()`` returning an :class:`automl_pt.model.Task` (head,
    loss, label handling).
    """


@hookspec
def automl_pt_register_backbones(register: "Registry") -> None:
    """Register catalog backbones with ``register.backbone(BackboneInfo(...))``.

    Catalog names are what ``automl-pt backbones`` lists and what ``search.backbones`` accepts
    besides hub names and local paths (see :func:`automl_pt_resolve_backbone`).
    """


@hookspec
def automl_pt_register_data_readers(register: "Registry") -> None:
    """Register data readers (table formats, folder trees) with ``register.reader(DataReader(...))``."""


@hookspec
def automl_pt_register_metrics(register: "Registry") -> None:
    """Register metrics with ``register.metric(Metric(...))``; tasks refer to them by name."""


# -- construction ---------------------------------------------------------------------------
@hookspec(firstresult=True)
def automl_pt_resolve_backbone(name: str, modality: str) -> "BackboneInfo | None":
    """Resolve a backbone that is not in the catalog: a hub name (``hf:org/model``,
    ``timm:convnext_tiny``) or a local directory / checkpoint file.

    Return ``None`` when ``name`` is not for this plugin or ``modality`` is not yours.
    Resolution must not download anything: downloads happen in ``BackboneInfo.load``.
    """


@hookspec
def automl_pt_search_space(task: "TaskInfo", config: "StudyConfig") -> "dict[str, Param] | None":
    """Default search-space fragment for ``task``: a dict of parameter name to
    :class:`~automl_pt.registry.Param`.

    Every plugin's fragment is merged; where two define the same name the plugin called first
    wins (mark generic defaults ``trylast=True``). The study's ``[search.space]`` then narrows or
    overrides any parameter.
    """


@hookspec(firstresult=True)
def automl_pt_preprocessor(backbone: Any, task: "TaskInfo", options: dict) -> Any:
    """Return the preprocessor that turns raw inputs into tensors for ``backbone``
    (an :class:`automl_pt.model.Preprocessor`), or ``None`` to use ``backbone.preprocessor()``.

    ``options`` are the study's ``[data]`` settings (e.g. ``max_length``).
    """


@hookspec
def automl_pt_data_options(task: "TaskInfo", inputs: Any) -> "dict[str, Any] | None":
    """Options derived from the training inputs (a sequence, as the task's data reader gave
    them), computed once per study in each process that trains, and merged into the options
    every backbone loader and :func:`automl_pt_preprocessor` receive. Keys are the plugin's to
    document (the vision plugin's ``native_image_size``: the images' typical shorter side,
    which sizes the input when ``[data] image_size`` is not set). Return ``None`` when
    ``task`` is not yours; keep it cheap (file headers, a sample of the inputs).
    """


@hookspec(firstresult=True)
def automl_pt_augmentation(task: "TaskInfo", backbone: Any, params: dict, num_labels: int) -> Any:
    """Return a callable ``augment(batch: dict[str, Tensor], generator) -> batch`` applied to
    training batches on the device, or ``None``. ``params`` are the trial's hyperparameters (e.g.
    ``augmentation_strength``).

    The batch holds the training targets under ``"targets"`` (class indices, ``(batch,)`` long);
    an augmentation that mixes examples (mixup, cutmix) may replace them with soft targets
    ``(batch, num_labels)`` float, which :class:`~automl_pt.model.ClassificationTask` accepts.
    """


@hookspec
def automl_pt_trial_callbacks(task: "TaskInfo", params: dict) -> "list[Any] | None":
    """Extra :class:`automl_pt.train.training.TrainerCallback` objects for a trial (logging,
    fault injection in tests, custom early stopping). Results of all plugins are concatenated."""


# -- export (see automl_pt.export.formats) ---------------------------------------------------------
@hookspec
def automl_pt_register_export_formats(register: "Registry") -> None:
    """Register ``automl-pt export --format`` formats with
    ``register.export_format(ExportFormat(...))``. The core registers ``native``,
    ``safetensors``, ``onnx`` and ``torchscript``; a plugin registers the library formats its
    backbones write (``ExportFormat("hf", library=True)``), or a format of its own.
    """


@hookspec(firstresult=True)
def automl_pt_export_support(backbone: Any, modality: str, task: Any) -> Any:
    """Return the :class:`automl_pt.export.formats.ExportSupport` of ``backbone`` (a loaded
    :class:`automl_pt.model.Backbone` of ``modality``, exported with the model's
    :class:`automl_pt.tasks.Task` ``task``; an implementation may leave the argument out):
    the modality knowledge exports need
    (sample inputs to trace with, names of dynamic axes, preprocessing steps, what the head is
    applied to, and the model card's "how to load" snippets), or ``None`` when ``backbone`` is
    not yours. Without an answer, ``native`` and library formats still export, with generic
    cards; ``onnx`` and ``torchscript`` need the sample inputs.
    """


# -- continued pre-training (see automl_pt.engine.pretrain) ----------------------------------------
@hookspec
def automl_pt_register_objectives(register: "Registry") -> None:
    """Register pre-training objectives with ``register.objective(Objective(...))``.

    An objective's ``create(backbone, context)`` returns an
    :class:`automl_pt.engine.pretrain.PretrainObjective` (an ``nn.Module`` holding the backbone and any
    extra heads, whose ``loss(batch, generator)`` is minimised); only the backbone's weights are
    kept. The core registers ``contrastive`` (as the built-in plugin
    ``automl_pt.builtin.objectives``); the text plugin registers ``mlm``.
    """


@hookspec(firstresult=True)
def automl_pt_pretrain_views(backbone: Any, modality: str, options: dict) -> Any:
    """Return ``views(batch, generator) -> (view_a, view_b)`` for contrastive pre-training of
    ``backbone``: two randomly augmented copies of a preprocessed batch (already on the device),
    both of which ``backbone.encode`` accepts. Random numbers come from ``generator`` (a CPU
    ``torch.Generator``), so views are reproducible for a seed. Return ``None`` when
    ``backbone`` / ``modality`` is not yours. ``options`` are the ``[pretrain]`` settings.
    """
