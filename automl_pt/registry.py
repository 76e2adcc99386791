"""Typed objects that plugins hand to the host through registration hooks.

Nothing here imports torch: the registry is built by ``automl-pt plugins`` and ``--help`` too.
Heavy objects (models, tokenizers) are created lazily by the ``load`` / ``create`` callables.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass(frozen=True)
class Domain:
    """Every value a hyperparameter may take at all (the searched range is a part of it): what a
    study file's fixed value, choice list or range for it is checked against before anything runs.

    ``kind`` is ``float`` (any number), ``int`` (an integer) or ``choice`` (one of ``choices``).
    ``low`` / ``high`` bound numbers; ``open_low`` / ``open_high`` make a bound exclusive.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[Any, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside this domain (``"5.0 is not a number in [0, 1)"``), or
        ``None`` when it is inside."""
        if self.kind == "choice":
            if any(value == c and type(value) is type(c) for c in self.choices):
                return None
            return f"{value!r} is not {self.describe()}" + (
                did_you_mean(value, [str(c) for c in self.choices]) if isinstance(value, str) else "")
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or (self.kind == "int" and not isinstance(value, int)) or not math.isfinite(value):
            return f"{value!r} is not {self.describe()}"
        below = self.low is not None and (value < self.low or (self.open_low and value == self.low))
        above = self.high is not None and (value > self.high or (self.open_high and value == self.high))
        return f"{value!r} is not {self.describe()}" if below or above else None

    def describe(self) -> str:
        """``"a number in [0, 1)"``, ``"an integer >= 1"``, ``"one of 'a', 'b'"``."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        what = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            return (f"{what} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.open_high else ']'}")
        if self.low is not None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.open_high else '<='} {self.high:g}"
        return what


@dataclass(frozen=True)
class Param:
    """One hyperparameter of the search space.

    ``kind`` is ``float``, ``int`` or ``categorical``; ``fixed`` is a categorical of one choice.
    ``domain`` is every value the parameter may take (see :class:`Domain`); a plugin that
    overrides a parameter of another plugin or of the core may leave it out to keep theirs.
    Without any, the domain is inferred from the default: numbers of its kind, or its choices.
    ``condition`` ``(other, values)``: the parameter is suggested only in trials where parameter
    ``other`` took one of ``values`` (e.g. ``lora_rank`` only when ``strategy`` is ``lora``).
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    domain: Domain | None = None
    #: ``(other parameter, values)``: suggested only in trials where the other parameter takes
    #: one of ``values`` (``top_layers`` only when ``strategy`` is ``"partial"``)
    condition: tuple[str, tuple[Any, ...]] | None = None

    def inferred_domain(self) -> Domain:
        """``domain``, or the one the default implies."""
        if self.domain is not None:
            return self.domain
        if self.kind in ("int", "float"):
            return Domain(self.kind)
        if self.choices and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                for c in self.choices):
            return Domain("int" if all(isinstance(c, int) for c in self.choices) else "float")
        return Domain("choice", choices=self.choices)

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for a value of this parameter."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),
                                   step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        scale = " log" if self.log else ""
        return f"[{self.low:g}, {self.high:g}]{scale}"


@dataclass(frozen=True)
class BackboneInfo:
    """A backbone a plugin can build.

    ``load(options)`` returns an :class:`automl_pt.model.Backbone` (an ``nn.Module``); it is called
    only when a trial needs the model. ``options`` holds the study's data options and, in a trial,
    ``options["params"]``: the trial's hyperparameters (e.g. a plugin's ``pooling``).
    ``source`` says where weights come from (a hub id, a path, a PyPI package) and is shown by
    ``automl-pt backbones``.
    """

    name: str
    modality: str
    load: Callable[..., Any]
    source: str = ""
    description: str = ""
    parameters: int | None = None
    aliases: tuple[str, ...] = ()
    plugin: str = ""


@dataclass(frozen=True)
class TaskInfo:
    """A task: what the inputs are, which head and loss train it, which metrics score it.

    ``create()`` returns an :class:`automl_pt.model.Task`.  ``input_key`` is the ``[data]`` key
    that names the input column (``text_column``, ``image_column``...); folder readers name their
    columns ``path`` and ``label``, so ``input_key`` should default to those (see
    :meth:`StudyConfig.input_column`).
    """

    name: str
    modality: str
    create: Callable[[], Any]
    metrics: tuple[str, ...]
    default_metric: str
    input_key: str
    description: str = ""
    plugin: str = ""
    # Inputs are file paths (images, audio): relative paths in a table are resolved against the
    # table's folder, and ``check_input(path) -> reason | None`` is run on every input before
    # training so bad files are reported (or skipped with ``data.on_bad_file = "skip"``).
    input_is_path: bool = False
    check_input: Callable[[Any], str | None] | None = None
    # The backbones a study of this task searches when its ``[search] backbones`` is left out:
    # catalog names that work offline, small enough for a first run on a CPU.
    default_backbones: tuple[str, ...] = ()
    # The shape of its targets: ``classification`` (one class), ``regression`` (a number),
    # ``multilabel`` (a set of labels); :func:`automl_pt.tasks.task_info` fills it in. Search
    # spaces read it without building the task (e.g. ``label_smoothing`` only for classification).
    kind: str = "classification"
    # Further ``[data]`` keys naming input columns (each defaulting to the key without
    # ``_column``): with any, every input is a tuple ``(input, *extras)`` in this order, in
    # training and in ``Predictor.predict`` (a sentence pair: ``("text_pair_column",)``).
    extra_input_keys: tuple[str, ...] = ()
    # The ``[data]`` key naming the target column: ``label_column`` (default ``label``), or a
    # key of the task's own defaulting to the key without ``_column`` (a transcript:
    # ``text_column``, default ``text``).
    target_key: str = "label_column"

    @property
    def input_keys(self) -> tuple[str, ...]:
        """``input_key`` followed by :attr:`extra_input_keys`."""
        return (self.input_key, *self.extra_input_keys)


@dataclass(frozen=True)
class DataReader:
    """Reads a dataset location into a pandas DataFrame.

    ``accepts(path)`` says whether this reader handles ``path``; ``read(path, options)`` returns a
    DataFrame whose rows keep the file order (so errors can cite row numbers).
    """

    name: str
    accepts: Callable[[Path], bool]
    read: Callable[[Path, dict], "pd.DataFrame"]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Metric:
    """``fn(labels, predictions, probabilities) -> float``; ``greater_is_better`` sets direction."""

    name: str
    fn: Callable[[Any, Any, Any], float]
    greater_is_better: bool = True
    plugin: str = ""
    # computed only when the study has more classes than this (top-5 accuracy is trivially 1.0
    # with five classes or fewer)
    min_classes: int = 0


@dataclass(frozen=True)
class Objective:
    """A continued pre-training objective (see :mod:`automl_pt.engine.pretrain`).

    ``create(backbone, context)`` returns a :class:`automl_pt.engine.pretrain.PretrainObjective`;
    ``context`` is a :class:`automl_pt.engine.pretrain.ObjectiveContext` (modality, ``[pretrain]``
    settings, the preprocessor, the plugin host). ``modalities`` lists the modalities it works
    for; empty means any backbone that produces an embedding.
    """

    name: str
    create: Callable[..., Any]
    modalities: tuple[str, ...] = ()
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class ExportFormat:
    """An ``automl-pt export --format`` (see :mod:`automl_pt.export.formats`).

    ``write(predictor, directory) -> details`` writes the model into the empty ``directory`` and
    returns what the export's ``automl_pt_export.json`` should record (``files``, ``inputs``...;
    a ``written_as`` entry names the format actually written, as ``safetensors`` does). A
    ``library`` format (``hf``, ``timm``) has no ``write``: it is the library's own folder that
    :meth:`automl_pt.model.Backbone.export_as` writes, and every plugin whose backbones write it
    registers the same name. ``with_preprocessing``: the plugin's preprocessing files are saved
    next to the model (every format but ``native``, which copies them with the model folder).
    """

    name: str
    write: Callable[[Any, Path], dict] | None = None
    description: str = ""
    library: bool = False
    with_preprocessing: bool = True
    plugin: str = ""


@dataclass
class Registry:
    """What plugins registered. Passed to the ``automl_pt_register_*`` hooks as ``register``.

    Names are unique per kind; registering a name twice raises :class:`PluginError` naming both
    plugins.
    """

    backbones: dict[str, BackboneInfo] = field(default_factory=dict)
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    readers: dict[str, DataReader] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    objectives: dict[str, Objective] = field(default_factory=dict)
    export_formats: dict[str, ExportFormat] = field(default_factory=dict)
    current_plugin: str = ""

    def _add(self, table: dict, kind: str, name: str, obj: Any) -> None:
        if name in table:
            raise PluginError(
                f"{kind} {name!r} is registered twice: by plugin {table[name].plugin!r} and by "
                f"plugin {self.current_plugin!r}; block one with AUTOML_PT_DISABLE_PLUGINS")
        table[name] = obj

    def backbone(self, info: BackboneInfo) -> None:
        info = _with_plugin(info, self.current_plugin)
        self._add(self.backbones, "backbone", info.name, info)

    def task(self, info: TaskInfo) -> None:
        self._add(self.tasks, "task", info.name, _with_plugin(info, self.current_plugin))

    def reader(self, reader: DataReader) -> None:
        self._add(self.readers, "data reader", reader.name, _with_plugin(reader, self.current_plugin))

    def metric(self, metric: Metric) -> None:
        self._add(self.metrics, "metric", metric.name, _with_plugin(metric, self.current_plugin))

    def objective(self, objective: Objective) -> None:
        self._add(self.objectives, "pre-training objective", objective.name,
                  _with_plugin(objective, self.current_plugin))

    def export_format(self, fmt: ExportFormat) -> None:
        """Register an export format; a library format (``library=True``) may be registered by
        every plugin whose backbones write it (the first registration is kept)."""
        known = self.export_formats.get(fmt.name)
        if known is not None and known.library and fmt.library:
            return
        self._add(self.export_formats, "export format", fmt.name,
                  _with_plugin(fmt, self.current_plugin))

    # -- lookups ---------------------------------------------------------------------------
    def find_backbone(self, name: str) -> BackboneInfo | None:
        if name in self.backbones:
            return self.backbones[name]
        for info in self.backbones.values():
            if name in info.aliases:
                return info
        return None

    def list_backbones(self, pattern: str | None = None, modality: str | None = None
                       ) -> list[BackboneInfo]:
        out = []
        for info in sorted(self.backbones.values(), key=lambda i: i.name):
            if modality and info.modality != modality:
                continue
            if pattern and not (fnmatch.fnmatch(info.name, pattern) or pattern in info.name):
                continue
            out.append(info)
        return out


def _with_plugin(obj: Any, plugin: str) -> Any:
    if getattr(obj, "plugin", "") or not plugin:
        return obj
    from dataclasses import replace

    return replace(obj, plugin=plugin)


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
