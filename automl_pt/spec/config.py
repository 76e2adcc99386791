"""Study configuration: parse a TOML study file (or a dict) and validate it up front.

Validation happens in two steps, both before anything is written to disk:

1. :func:`load_config` / :func:`config_from_dict` check structure: unknown keys (with a "did you
   mean"), types, ranges, sampler / pruner names, that data files exist.
2. :func:`validate_against_plugins` checks what needs the plugins: the task, its metric, the
   backbones and the search-space parameter names.

Every problem raises :class:`~automl_pt.errors.ConfigError` naming the file, the key and (for study
files) the line.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import did_you_mean

SAMPLERS = ("tpe", "random", "gp", "grid")
PRUNERS = ("auto", "hyperband", "median", "none")
DIRECTIONS = ("maximize", "minimize")
ON_BAD_FILE = ("error", "skip")


@dataclass
class StudySection:
    name: str
    metric: str | None = None
    direction: str | None = None
    trials: int | None = 10
    timeout: float | None = None
    seed: int = 0
    plugins: list[str] = field(default_factory=list)
    max_failures: int = 5
    preset: str | None = None


@dataclass
class TaskSection:
    type: str


@dataclass
class DataSection:
    train: Any
    validation: Any = None
    test: Any = None
    columns: dict[str, str] = field(default_factory=dict)   # e.g. {"text_column": "text"}
    label_column: str = "label"
    #: multi-label tasks: the separator of labels in a label cell (``"a|b"``)
    label_separator: str = "|"
    validation_fraction: float = 0.2
    max_length: int | None = None
    image_size: int | None = None
    on_bad_file: str = "error"


@dataclass
class SearchSection:
    #: candidate backbones; empty in a study file that leaves them out, until
    #: :meth:`automl_pt.Study.prepare` fills in the task's default backbones
    backbones: list[str] = field(default_factory=list)
    sampler: str = "tpe"
    pruner: str = "auto"
    space: dict[str, Any] = field(default_factory=dict)
    #: the frozen-feature probe as the first trial(s) (automl_pt.engine.seeding): None = when
    #: linear_probe is among the strategies, True = always (adds it), False = never
    baseline: bool | None = None
    known_good: bool = True
    #: the ``[study] preset``'s ``[search.space]`` entries the study file does not override
    preset_space: dict[str, Any] = field(default_factory=dict)
    #: checkpoint averaging and soups (:mod:`automl_pt.engine.soups`): greedy | uniform | none
    soup: str = "greedy"
    #: > 1: measure an ensemble of the top ``ensemble`` trials (averaged probabilities)
    ensemble: int = 0
    #: train the best configuration again on targets mixed with the ``ensemble``'s outputs
    #: (:mod:`automl_pt.engine.finish`); needs ``ensemble`` >= 2
    distill: bool = False
    #: retrain the best configuration on train + validation before export
    refit: bool = False
    #: earlier run directories whose best configurations are tried first (resolved paths)
    warm_start: list[Any] | str = field(default_factory=list)   # or "auto"
    #: the sampler also reads the ``warm_start`` studies' finished trials as its history
    #: (:func:`automl_pt.engine.warmstart.with_history`)
    warm_start_sampler: bool = True


@dataclass
class ResourcesSection:
    devices: str = "auto"
    trials_per_device: int = 1
    micro_batch_size: int | None = None
    num_threads: int | None = None
    trial_timeout: float | None = None
    workers: str = "process"




@dataclass
class PretrainSection:
    """``[pretrain]``: continued pre-training on unlabeled data (see :mod:`automl_pt.engine.pretrain`).
    ``steps`` (when set) replaces ``epochs``."""

    data: Path
    objective: str = "contrastive"
    epochs: int = 1
    steps: int | None = None
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    temperature: float = 0.05
    mask_probability: float = 0.15
    checkpoint_every: int = 100
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StorageSection:
    dir: Path
    optuna: str = "sqlite"
    heartbeat_interval: int = 10
    grace_period: int = 40


@dataclass
class StudyConfig:
    """A validated study. ``source`` is the study file (``None`` for dict configs);
    ``base_dir`` is the folder its relative paths (data, run directory, ``[study] plugins``)
    are resolved against: the study file's folder, or the ``base_dir`` a dict config was given."""

    study: StudySection
    task: TaskSection
    data: DataSection
    search: SearchSection
    resources: ResourcesSection
    storage: StorageSection
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    pretrain: PretrainSection | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def run_dir(self) -> Path:
        return self.storage.dir

    def input_column(self, input_key: str, default: str) -> str:
        return self.data.columns.get(input_key, default)

    def target_column(self, task: Any) -> str:
        """The column a task's targets are read from: ``[data] label_column``, or the task's
        own key (``TaskInfo.target_key``, default: the key without ``_column``)."""
        key = getattr(task, "target_key", "label_column")
        if key == "label_column":
            return self.data.label_column
        return self.data.columns.get(key, key.removesuffix("_column"))

    def input_columns(self, task: Any) -> list[str]:
        """The columns a task's inputs are read from: ``[data] <key>`` for each of its
        ``input_keys`` (``TaskInfo.input_keys``), else the key without ``_column``."""
        keys = getattr(task, "input_keys", None) or (task.input_key,)
        return [self.input_column(k, k.removesuffix("_column")) for k in keys]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (data objects passed through the API are described, not dumped)."""
        out = asdict(self)
        for split in ("train", "validation", "test"):
            value = out["data"][split]
            if value is not None and not isinstance(value, (str, Path)):
                out["data"][split] = f"<{type(value).__name__}>"
        out["storage"]["dir"] = str(self.storage.dir)
        out["source"] = str(self.source) if self.source else None
        out.pop("base_dir", None)   # the study file's folder: implied by source
        for key in ("train", "validation", "test"):
            if isinstance(out["data"][key], Path):
                out["data"][key] = str(out["data"][key])
        out.pop("raw", None)
        if self.pretrain is not None:
            out["pretrain"]["data"] = str(self.pretrain.data)
        return out


# --------------------------------------------------------------------------------------------
# Schema: section -> key -> (accepted python types, description)
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "study": {
        "name": ((str,), "study name"),
        "metric": ((str,), "validation metric to optimise"),
        "direction": ((str,), "maximize | minimize"),
        "trials": ((int,), "number of finished trials wanted"),
        "timeout": ((str, int, float), "time budget, e.g. \"30m\""),
        "seed": ((int,), "random seed"),
        "plugins": ((list,), "extra plugins to load: module names or .py files (relative to this file)"),
        "max_failures": ((int,), "stop after this many consecutive failed trials"),
        "preset": ((str,), "fast | balanced | best: trials, search space, pruning and fidelity"),
    },
    "task": {"type": ((str,), "task name")},
    "data": {
        "train": ((str,), "training data path"),
        "validation": ((str,), "validation data path"),
        "test": ((str,), "test data path"),
        "label_column": ((str,), "label column"),
        "label_separator": ((str,), "multi-label tasks: what joins labels in a label cell (default \"|\")"),
        "validation_fraction": ((float, int), "fraction of train held out when no validation"),
        "max_length": ((int,), "maximum input length (tokens for text)"),
        "image_size": ((int,), "image side in pixels (default: the backbone's pretrained input size)"),
        "on_bad_file": ((str,), "error | skip"),
    },
    "search": {
        "backbones": ((list, str), "candidate backbones (default: the task's)"),
        "sampler": ((str,), "tpe | random | gp | grid"),
        "pruner": ((str,), "auto | hyperband | median | none"),
        "space": ((dict,), "search-space overrides"),
        "baseline": ((bool,), "start with the frozen-feature probe (true also adds linear_probe "
                              "to the strategies; false: no probe)"),
        "known_good": ((bool,), "enqueue one known-good configuration per strategy first"),
        "soup": ((str,), "greedy | uniform | none: average the best epochs and the top trials"),
        "ensemble": ((int,), "measure an ensemble of the top k trials (0: off)"),
        "distill": ((bool,), "distil the [search] ensemble into one model of the best configuration "
                              "(exported where it beats the best trial on validation)"),
        "refit": ((bool,), "retrain the best configuration on train + validation before export"),
        "warm_start": ((list, str), "earlier run directories (or \"auto\": the sibling run directories) whose best configurations go first"),
        "warm_start_sampler": ((bool,), "the sampler also reads the warm_start studies' finished trials "
                                        "as its history (default true; not the grid sampler)"),
    },
    "resources": {
        "devices": ((str,), "auto | cpu | cuda | cuda:0,1"),
        "trials_per_device": ((int,), "parallel trials per device"),
        "micro_batch_size": ((int,), "largest batch per forward pass (gradient accumulation)"),
        "num_threads": ((int,), "CPU threads per trial"),
        "trial_timeout": ((str, int, float), "kill a trial after this long"),
        "workers": ((str,), "process (one worker process per device slot) | inline (debugging)"),
    },
    "storage": {
        "dir": ((str,), "run directory"),
        "optuna": ((str,), "sqlite | an RDB URL"),
        "heartbeat_interval": ((int,), "seconds between trial heartbeats"),
        "grace_period": ((int,), "seconds without heartbeat before a trial counts as dead"),
    },
    "pretrain": {
        "data": ((str,), "unlabeled data path (same formats as [data] train; labels not needed)"),
        "objective": ((str,), "pre-training objective: contrastive | mlm | a plugin's"),
        "epochs": ((int,), "passes over the unlabeled data"),
        "steps": ((int,), "optimizer steps (replaces epochs)"),
        "learning_rate": ((float, int), "peak learning rate"),
        "batch_size": ((int,), "examples per step"),
        "warmup_ratio": ((float, int), "fraction of steps of linear warmup"),
        "weight_decay": ((float, int), "AdamW weight decay"),
        "temperature": ((float, int), "InfoNCE temperature (contrastive)"),
        "mask_probability": ((float, int), "fraction of tokens masked (mlm)"),
        "checkpoint_every": ((int,), "steps between resumable checkpoints"),
        "options": ((dict,), "objective-specific settings"),
    },
}
_REQUIRED = {"study": ("name",), "task": ("type",), "data": ("train",)}
_DEVICES_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*)$")


class _Where:
    """Finds the line of a key in the study file text, for error messages, and collects the
    problems found (:meth:`add`) so that one run reports all of them (:meth:`check`)."""

    def __init__(self, source: Path | None, text: str | None):
        self.source = source
        self.lines = text.splitlines() if text else []
        self.problems: list[str] = []

    @classmethod
    def of(cls, config: "StudyConfig") -> "_Where":
        source = config.source
        return cls(source, source.read_text(encoding="utf-8") if source and source.is_file() else None)

    def line_of(self, section: str, key: str | None) -> int | None:
        if not self.lines:
            return None
        header = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]")
        any_header = re.compile(r"^\s*\[")
        start = None
        for i, line in enumerate(self.lines):
            if header.match(line):
                start = i
                if key is None:
                    return i + 1
                continue
            if start is not None and any_header.match(line):
                start = None
            if start is not None and key is not None and re.match(
                    r"^\s*" + re.escape(key) + r"\s*=", line):
                return i + 1
        if key is not None and "." in section:  # [search.space] keys may be inline tables
            return self.line_of(section.rsplit(".", 1)[0], section.rsplit(".", 1)[1])
        return None

    def message(self, section: str, key: str | None, message: str) -> str:
        where = str(self.source) if self.source else "config"
        line = self.line_of(section, key)
        loc = f"{where}:{line}" if line else where
        return f"{loc}: [{section}] {key}: {message}" if key else f"{loc}: [{section}]: {message}"

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        return ConfigError(self.message(section, key, message))

    def add(self, section: str, key: str | None, message: str) -> None:
        """Record a problem and go on checking (see :meth:`check`)."""
        line = self.message(section, key, message)
        if line not in self.problems:
            self.problems.append(line)

    def check(self) -> None:
        """Raise one :class:`ConfigError` listing every problem recorded so far, in file order."""
        if self.problems:
            raise ConfigError(problems=sorted(self.problems, key=self._order))

    def _order(self, problem: str) -> tuple[int, int]:
        match = re.match(r"^.*?:(\d+): ", problem)
        return (0, int(match.group(1))) if match else (1, 0)


def parse_duration(value: Any) -> float:
    """``90`` / ``"90s"`` / ``"30m"`` / ``"2h"`` / ``"1d"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (examples: 90, \"90s\", \"30m\", \"2h\")")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read and structurally validate a study file. Raises :class:`ConfigError` listing every
    problem found."""
    config, where = parse_config(path, overrides)
    where.check()
    return config


def parse_config(path: str | Path, overrides: dict[str, Any] | None = None
                 ) -> tuple[StudyConfig, _Where]:
    """Like :func:`load_config`, but returns the config with its problems instead of raising:
    values with a problem are left at their defaults, so later checks (the plugins') can still
    run and every problem of a study file is reported at once. Raises :class:`ConfigError` only
    when the file is missing or is not TOML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if overrides:
        raw = _deep_merge(raw, overrides)
    where = _Where(path.resolve(), text)
    return _build(raw, path.resolve(), path.resolve().parent, where), where


def config_from_dict(raw: dict[str, Any], base_dir: str | Path = ".") -> StudyConfig:
    """Validate a config given as a dict (same keys as a study file). Data entries may also be
    pandas DataFrames, lists of dicts or Hugging Face datasets."""
    config, where = parse_dict(raw, base_dir)
    where.check()
    return config


def parse_dict(raw: dict[str, Any], base_dir: str | Path = ".") -> tuple[StudyConfig, _Where]:
    """:func:`config_from_dict` returning its problems (see :func:`parse_config`)."""
    where = _Where(None, None)
    return _build(copy.copy(raw), None, Path(base_dir).resolve(), where), where


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# placeholders for required values that have a problem: the config still builds, the problem is
# reported, and nothing runs (where.check() raises before any use)
_PLACEHOLDER = {("study", "name"): "study", ("task", "type"): "", ("data", "train"): None}


def _build(raw: dict[str, Any], source: Path | None, base_dir: Path, where: _Where) -> StudyConfig:
    """Check every section and key, recording each problem in ``where``; a value with a problem
    falls back to its default (or a placeholder) so that the rest is still checked."""
    _check_sections(where, raw)
    values = _typed_values(raw, source, where)
    for (section, key), placeholder in _PLACEHOLDER.items():
        values[section].setdefault(key, placeholder)
    _check_study(where, values["study"])
    _check_data(where, values["data"], base_dir)
    _check_search(where, values["search"])
    _apply_preset(where, values["study"], values["search"])
    from .search_keys import check_search_keys

    check_search_keys(where, values["search"], base_dir, values["task"].get("type"))
    _check_resources(where, values["resources"])
    _check_storage(where, values["storage"], values["study"]["name"], base_dir)
    pretrain = (_pretrain_section(where, values["pretrain"], base_dir)
                if isinstance(raw.get("pretrain"), dict) else None)
    return StudyConfig(
        pretrain=pretrain, study=StudySection(**values["study"]), task=TaskSection(**values["task"]),
        data=DataSection(**values["data"]), search=SearchSection(**values["search"]),
        resources=ResourcesSection(**values["resources"]),
        storage=StorageSection(**values["storage"]), source=source, raw=raw, base_dir=base_dir)


def _check_sections(where: _Where, raw: dict[str, Any]) -> None:
    """Unknown sections, sections that are not tables, required keys that are missing."""
    for section in list(raw):
        if section not in _SCHEMA:
            where.add(section, None, f"unknown section{did_you_mean(section, list(_SCHEMA))}; "
                      f"sections are {', '.join('[' + s + ']' for s in _SCHEMA)}")
        elif not isinstance(raw[section], dict):
            where.add(section, None, "must be a table")
    for section, keys in _REQUIRED.items():
        for key in keys:
            if not isinstance(raw.get(section), dict) or key not in raw[section]:
                where.add(section, key, f"missing required key ({_SCHEMA[section][key][1]})")


def _check_study(where: _Where, s: dict[str, Any]) -> None:
    """``[study]``: a name usable as a folder name, direction, counts, timeout, plugins."""
    if not re.fullmatch(r"[\w.\-]+", s["name"]) or not s["name"].strip("."):
        where.add("study", "name", "use letters, digits, '.', '-' or '_' only, not only dots "
                  "(the name is a folder name: runs/NAME)")
        s["name"] = "study"
    if "direction" in s and s["direction"] not in DIRECTIONS:
        where.add("study", "direction", f"must be one of {', '.join(DIRECTIONS)}"
                  f"{did_you_mean(s.pop('direction'), DIRECTIONS)}")
    for key in ("trials", "max_failures"):
        if key in s and s[key] < 1:
            where.add("study", key, "must be at least 1")
            s.pop(key)
    _duration(where, s, "study", "timeout")
    if "plugins" in s and not all(isinstance(p, str) and p for p in s["plugins"]):
        where.add("study", "plugins", "must be a list of module names")
        s.pop("plugins")


def _apply_preset(where: _Where, s: dict[str, Any], search: dict[str, Any]) -> None:
    """``[study] preset``: fill in what the study file leaves out (:mod:`automl_pt.spec.presets`)."""
    if "preset" not in s:
        return
    from .presets import PRESETS, apply_preset

    if s["preset"] in PRESETS:
        search["preset_space"] = apply_preset(s["preset"], s, search)
    else:
        where.add("study", "preset", f"unknown preset {s['preset']!r}"
                  f"{did_you_mean(s['preset'], list(PRESETS))}; choose one of "
                  f"{', '.join(PRESETS)}")
        s.pop("preset")


def _check_storage(where: _Where, st: dict[str, Any], name: str, base_dir: Path) -> None:
    """``[storage]``: heartbeat timing, the run directory (resolved: ``runs/NAME`` by default)
    and the Optuna storage URL."""
    for key in ("heartbeat_interval", "grace_period"):
        if key in st and st[key] < 1:
            where.add("storage", key, "must be at least 1 second")
            st.pop(key)
    if st.get("grace_period", 40) <= st.get("heartbeat_interval", 10):
        where.add("storage", "grace_period", "must be longer than heartbeat_interval")
        st.pop("grace_period", None), st.pop("heartbeat_interval", None)
    run_dir = Path(st.get("dir", f"runs/{name}")).expanduser()
    st["dir"] = (run_dir if run_dir.is_absolute() else base_dir / run_dir).resolve()
    optuna_url = st.get("optuna", "sqlite")
    if optuna_url != "sqlite" and not re.match(r"^(sqlite|postgresql|mysql)(\+\w+)?://", optuna_url):
        where.add("storage", "optuna", "use \"sqlite\" (a file in the run directory) or an "
                  "RDB URL such as postgresql://user@host/db")
        st.pop("optuna")


def _typed_values(raw: dict[str, Any], source: Path | None, where: _Where) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` of the keys that exist and have the right type."""
    values: dict[str, dict[str, Any]] = {}
    for section, schema in _SCHEMA.items():
        values[section] = {}
        table = raw.get(section)
        for key, value in (table.items() if isinstance(table, dict) else ()):
            if section == "data" and key.endswith("_column") and key != "label_column":
                if not isinstance(value, str):
                    where.add(section, key, f"expected a string, got {type(value).__name__}")
                    continue
                values[section].setdefault("columns", {})[key] = value
                continue
            if key not in schema:
                where.add(section, key, f"unknown key{did_you_mean(key, list(schema))}; "
                          f"known keys: {', '.join(schema)}")
                continue
            types, _ = schema[key]
            is_data_object = section == "data" and key in ("train", "validation", "test") and source is None
            if not is_data_object and (not isinstance(value, types)
                                   or (isinstance(value, bool) and bool not in types)):
                expected = " or ".join(t.__name__ for t in types)
                where.add(section, key, f"expected {expected}, got {type(value).__name__} {value!r}")
                continue
            values[section][key] = value
    return values


def _duration(where: _Where, values: dict[str, Any], section: str, key: str) -> None:
    if key in values:
        try:
            values[key] = parse_duration(values[key])
        except ValueError as exc:
            where.add(section, key, str(exc))
            values.pop(key)


def _check_data(where: _Where, d: dict[str, Any], base_dir: Path) -> None:
    for split in ("train", "validation", "test"):
        if split in d and isinstance(d[split], str):
            p = Path(d[split]).expanduser()
            p = p if p.is_absolute() else base_dir / p
            if not p.exists():
                where.add("data", split, f"file not found: {p}")
            d[split] = p
    for key, ok, message in (
            ("validation_fraction", lambda v: 0 < v < 1, "must be between 0 and 1 (exclusive)"),
            ("max_length", lambda v: v >= 1, "must be at least 1"),
            ("image_size", lambda v: v >= 8, "must be at least 8 (pixels)"),
            ("label_separator", lambda v: v != "", "must not be empty (e.g. \"|\" or \";\")"),
            ("on_bad_file", lambda v: v in ON_BAD_FILE, f"must be one of {', '.join(ON_BAD_FILE)}")):
        if key in d and not ok(d[key]):
            where.add("data", key, message)
            d.pop(key)


def _check_search(where: _Where, se: dict[str, Any]) -> None:
    """``[search]``; ``backbones`` may be left out (the task's default backbones are used)."""
    if isinstance(se.get("backbones"), str):
        se["backbones"] = [se["backbones"]]
    backbones = se.get("backbones", [])
    if "backbones" in se and (not backbones or not all(isinstance(b, str) and b for b in backbones)):
        where.add("search", "backbones", "must be a non-empty list of backbone names (or leave it "
                  "out for the task's default backbones)")
        se["backbones"] = []
    elif len(set(backbones)) != len(backbones):
        where.add("search", "backbones", "lists a backbone twice")
    se.setdefault("backbones", [])
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in se and se[key] not in allowed:
            where.add("search", key, f"unknown {key} {se[key]!r}{did_you_mean(se[key], allowed)}; "
                      f"choose one of {', '.join(allowed)}")
            se.pop(key)
    space = se.get("space", {})
    for name in list(space):
        if not _check_space_entry(where, name, space[name]):
            space.pop(name)


def _check_resources(where: _Where, r: dict[str, Any]) -> None:
    if "devices" in r and not _DEVICES_RE.match(r["devices"]):
        where.add("resources", "devices", f"{r.pop('devices')!r} is not auto, cpu, cuda or cuda:0,1,...")
    for key in ("trials_per_device", "micro_batch_size", "num_threads"):
        if key in r and r[key] < 1:
            where.add("resources", key, "must be at least 1")
            r.pop(key)
    _duration(where, r, "resources", "trial_timeout")
    if "workers" in r and r["workers"] not in ("process", "inline"):
        where.add("resources", "workers", "must be \"process\" or \"inline\"")
        r.pop("workers")


def _pretrain_section(where: _Where, p: dict[str, Any], base_dir: Path) -> PretrainSection | None:
    """Validate ``[pretrain]`` (the objective name is checked against the plugins later);
    ``None`` when its data is missing (the problem is recorded)."""
    if "data" not in p:
        where.add("pretrain", None, "missing required key data (the unlabeled data path)")
        return None
    path = Path(p["data"]).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        where.add("pretrain", "data", f"file not found: {path}")
    p["data"] = path
    if "epochs" in p and "steps" in p:
        where.add("pretrain", "steps", "give epochs or steps, not both")
        p.pop("steps")
    for key, low in (("epochs", 1), ("steps", 1), ("batch_size", 2), ("checkpoint_every", 1)):
        if key in p and p[key] < low:
            where.add("pretrain", key, f"must be at least {low}")
            p.pop(key)
    for key in ("learning_rate", "temperature"):
        if key in p and not (math.isfinite(p[key]) and p[key] > 0):
            where.add("pretrain", key, "must be a positive number")
            p.pop(key)
    for key, high in (("warmup_ratio", 1.0), ("mask_probability", 1.0)):
        if key in p and not 0 <= p[key] < high:
            where.add("pretrain", key, f"must be in [0, {high:g})")
            p.pop(key)
    if "weight_decay" in p and p["weight_decay"] < 0:
        where.add("pretrain", "weight_decay", "must not be negative")
        p.pop("weight_decay")
    if "objective" in p and not p["objective"].strip():
        where.add("pretrain", "objective", "must name an objective")
        p.pop("objective")
    return PretrainSection(**p)


def _check_space_entry(where: _Where, name: str, spec: Any) -> bool:
    """Check the shape of one ``[search.space]`` entry (its values are checked against the
    parameter's domain once the plugins are loaded: :func:`automl_pt.engine.search.build_search_space`).
    Returns whether it is usable; problems are recorded in ``where``."""
    section = "search.space"
    if isinstance(spec, list):
        if not spec:
            where.add(section, name, "an empty list leaves nothing to choose")
            return False
        return True
    if isinstance(spec, (str, int, float, bool)):
        return True
    if not isinstance(spec, dict):
        where.add(section, name, "use a list (categorical), a value (fixed) or "
                  "{ low = ..., high = ..., log = true }")
        return False
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown:
        bad = sorted(unknown)[0]
        where.add(section, name, f"unknown range key {bad!r}"
                  f"{did_you_mean(bad, ['low', 'high', 'log', 'step'])}; use low, high, log, step")
        return False
    if "low" not in spec or "high" not in spec:
        where.add(section, name, "a range needs both low and high")
        return False
    low, high = spec["low"], spec["high"]
    for k, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            where.add(section, name, f"{k} must be a number, got {v!r}")
            return False
    problems = len(where.problems)
    if low > high:
        where.add(section, name, f"impossible range: low ({low}) > high ({high})")
    if spec.get("log") and low <= 0:
        where.add(section, name, f"a log range needs low > 0, got {low}")
    if "step" in spec and (isinstance(spec["step"], bool) or not isinstance(spec["step"], (int, float))
                           or spec["step"] <= 0):
        where.add(section, name, "step must be a positive number")
    if "log" in spec and not isinstance(spec["log"], bool):
        where.add(section, name, "log must be true or false")
    return len(where.problems) == problems
