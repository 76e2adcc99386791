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

from .errors import ConfigError
from .registry import did_you_mean

SAMPLERS = ("tpe", "random", "gp", "grid")
PRUNERS = ("hyperband", "median", "none")
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
    validation_fraction: float = 0.2
    max_length: int | None = None
    image_size: int | None = None
    on_bad_file: str = "error"


@dataclass
class SearchSection:
    backbones: list[str]
    sampler: str = "tpe"
    pruner: str = "hyperband"
    space: dict[str, Any] = field(default_factory=dict)


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
    """``[pretrain]``: continued pre-training on unlabeled data (see :mod:`automl_pt.pretrain`).
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
    """A validated study. ``source`` is the study file (``None`` for dict configs)."""

    study: StudySection
    task: TaskSection
    data: DataSection
    search: SearchSection
    resources: ResourcesSection
    storage: StorageSection
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    pretrain: PretrainSection | None = None

    @property
    def run_dir(self) -> Path:
        return self.storage.dir

    def input_column(self, input_key: str, default: str) -> str:
        return self.data.columns.get(input_key, default)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (data objects passed through the API are described, not dumped)."""
        out = asdict(self)
        for split in ("train", "validation", "test"):
            value = out["data"][split]
            if value is not None and not isinstance(value, (str, Path)):
                out["data"][split] = f"<{type(value).__name__}>"
        out["storage"]["dir"] = str(self.storage.dir)
        out["source"] = str(self.source) if self.source else None
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
        "plugins": ((list,), "extra plugin modules to load"),
        "max_failures": ((int,), "stop after this many consecutive failed trials"),
    },
    "task": {"type": ((str,), "task name")},
    "data": {
        "train": ((str,), "training data path"),
        "validation": ((str,), "validation data path"),
        "test": ((str,), "test data path"),
        "label_column": ((str,), "label column"),
        "validation_fraction": ((float, int), "fraction of train held out when no validation"),
        "max_length": ((int,), "maximum input length (tokens for text)"),
        "image_size": ((int,), "image side in pixels (default: the backbone's pretrained input size)"),
        "on_bad_file": ((str,), "error | skip"),
    },
    "search": {
        "backbones": ((list, str), "candidate backbones"),
        "sampler": ((str,), "tpe | random | gp | grid"),
        "pruner": ((str,), "hyperband | median | none"),
        "space": ((dict,), "search-space overrides"),
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
_REQUIRED = {"study": ("name",), "task": ("type",), "data": ("train",), "search": ("backbones",)}
_DEVICES_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*)$")


class _Where:
    """Finds the line of a key in the study file text, for error messages."""

    def __init__(self, source: Path | None, text: str | None):
        self.source = source
        self.lines = text.splitlines() if text else []

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

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        dotted = f"{section}.{key}" if key else section
        where = str(self.source) if self.source else "config"
        line = self.line_of(section, key)
        loc = f"{where}:{line}" if line else where
        return ConfigError(f"{loc}: [{section}] {key}: {message}" if key else f"{loc}: [{dotted}]: {message}")


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
    """Read and structurally validate a study file. Raises :class:`ConfigError`."""
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
    return _build(raw, source=path.resolve(), base_dir=path.resolve().parent, text=text)


def config_from_dict(raw: dict[str, Any], base_dir: str | Path = ".") -> StudyConfig:
    """Validate a config given as a dict (same keys as a study file). Data entries may also be
    pandas DataFrames, lists of dicts or Hugging Face datasets."""
    return _build(copy.copy(raw), source=None, base_dir=Path(base_dir).resolve(), text=None)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(raw: dict[str, Any], source: Path | None, base_dir: Path, text: str | None) -> StudyConfig:
    where = _Where(source, text)
    for section in raw:
        if section not in _SCHEMA:
            raise where.error(section, None, f"unknown section{did_you_mean(section, list(_SCHEMA))}; "
                              f"sections are {', '.join('[' + s + ']' for s in _SCHEMA)}")
        if not isinstance(raw[section], dict):
            raise where.error(section, None, "must be a table")
    for section, keys in _REQUIRED.items():
        for key in keys:
            if key not in raw.get(section, {}):
                raise where.error(section, key, f"missing required key ({_SCHEMA[section][key][1]})")

    values: dict[str, dict[str, Any]] = {}
    for section, schema in _SCHEMA.items():
        values[section] = {}
        for key, value in raw.get(section, {}).items():
            if section == "data" and key.endswith("_column") and key != "label_column":
                if not isinstance(value, str):
                    raise where.error(section, key, f"expected a string, got {type(value).__name__}")
                values[section].setdefault("columns", {})[key] = value
                continue
            if key not in schema:
                raise where.error(section, key, f"unknown key{did_you_mean(key, list(schema))}; "
                                  f"known keys: {', '.join(schema)}")
            types, _ = schema[key]
            is_data_object = section == "data" and key in ("train", "validation", "test") and source is None
            if not is_data_object and (not isinstance(value, types) or isinstance(value, bool)):
                expected = " or ".join(t.__name__ for t in types)
                raise where.error(section, key, f"expected {expected}, got {type(value).__name__} {value!r}")
            values[section][key] = value

    s = values["study"]
    if not re.fullmatch(r"[\w.\-]+", s["name"]) or not s["name"].strip("."):
        raise where.error("study", "name", "use letters, digits, '.', '-' or '_' only, not only dots "
                          "(the name is a folder name: runs/NAME)")
    if "direction" in s and s["direction"] not in DIRECTIONS:
        raise where.error("study", "direction", f"must be one of {', '.join(DIRECTIONS)}"
                          f"{did_you_mean(s['direction'], DIRECTIONS)}")
    if "trials" in s and s["trials"] < 1:
        raise where.error("study", "trials", "must be at least 1")
    if "timeout" in s:
        try:
            s["timeout"] = parse_duration(s["timeout"])
        except ValueError as exc:
            raise where.error("study", "timeout", str(exc)) from None
    if "max_failures" in s and s["max_failures"] < 1:
        raise where.error("study", "max_failures", "must be at least 1")
    if "plugins" in s and not all(isinstance(p, str) for p in s["plugins"]):
        raise where.error("study", "plugins", "must be a list of module names")

    d = values["data"]
    for split in ("train", "validation", "test"):
        if split in d and isinstance(d[split], str):
            p = Path(d[split]).expanduser()
            p = p if p.is_absolute() else base_dir / p
            if not p.exists():
                raise where.error("data", split, f"file not found: {p}")
            d[split] = p
    if "validation_fraction" in d and not 0 < d["validation_fraction"] < 1:
        raise where.error("data", "validation_fraction", "must be between 0 and 1 (exclusive)")
    if "max_length" in d and d["max_length"] < 1:
        raise where.error("data", "max_length", "must be at least 1")
    if "image_size" in d and d["image_size"] < 8:
        raise where.error("data", "image_size", "must be at least 8 (pixels)")
    if "on_bad_file" in d and d["on_bad_file"] not in ON_BAD_FILE:
        raise where.error("data", "on_bad_file", f"must be one of {', '.join(ON_BAD_FILE)}")

    se = values["search"]
    if isinstance(se["backbones"], str):
        se["backbones"] = [se["backbones"]]
    if not se["backbones"] or not all(isinstance(b, str) and b for b in se["backbones"]):
        raise where.error("search", "backbones", "must be a non-empty list of backbone names")
    if len(set(se["backbones"])) != len(se["backbones"]):
        raise where.error("search", "backbones", "lists a backbone twice")
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in se and se[key] not in allowed:
            raise where.error("search", key, f"unknown {key} {se[key]!r}{did_you_mean(se[key], allowed)}; "
                              f"choose one of {', '.join(allowed)}")
    for name, spec in se.get("space", {}).items():
        _check_space_entry(where, name, spec)

    r = values["resources"]
    if "devices" in r and not _DEVICES_RE.match(r["devices"]):
        raise where.error("resources", "devices", f"{r['devices']!r} is not auto, cpu, cuda or cuda:0,1,...")
    for key in ("trials_per_device", "micro_batch_size", "num_threads"):
        if key in r and r[key] < 1:
            raise where.error("resources", key, "must be at least 1")
    if "trial_timeout" in r:
        try:
            r["trial_timeout"] = parse_duration(r["trial_timeout"])
        except ValueError as exc:
            raise where.error("resources", "trial_timeout", str(exc)) from None

    if "workers" in r and r["workers"] not in ("process", "inline"):
        raise where.error("resources", "workers", "must be \"process\" or \"inline\"")

    st = values["storage"]
    for key in ("heartbeat_interval", "grace_period"):
        if key in st and st[key] < 1:
            raise where.error("storage", key, "must be at least 1 second")
    if st.get("grace_period", 40) <= st.get("heartbeat_interval", 10):
        raise where.error("storage", "grace_period", "must be longer than heartbeat_interval")
    run_dir = Path(st.get("dir", f"runs/{s['name']}")).expanduser()
    st["dir"] = (run_dir if run_dir.is_absolute() else base_dir / run_dir).resolve()
    optuna_url = st.get("optuna", "sqlite")
    if optuna_url != "sqlite" and not re.match(r"^(sqlite|postgresql|mysql)(\+\w+)?://", optuna_url):
        raise where.error("storage", "optuna", "use \"sqlite\" (a file in the run directory) or an "
                          "RDB URL such as postgresql://user@host/db")

    pretrain = _pretrain_section(where, values["pretrain"], base_dir) if "pretrain" in raw else None
    return StudyConfig(
        pretrain=pretrain, study=StudySection(**s), task=TaskSection(**values["task"]), data=DataSection(**d),
        search=SearchSection(**se), resources=ResourcesSection(**r), storage=StorageSection(**st),
        source=source, raw=raw)


def _pretrain_section(where: _Where, p: dict[str, Any], base_dir: Path) -> PretrainSection:
    """Validate ``[pretrain]`` (the objective name is checked against the plugins later)."""
    if "data" not in p:
        raise where.error("pretrain", None, "missing required key data (the unlabeled data path)")
    path = Path(p["data"]).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise where.error("pretrain", "data", f"file not found: {path}")
    p["data"] = path
    if "epochs" in p and "steps" in p:
        raise where.error("pretrain", "steps", "give epochs or steps, not both")
    for key, low in (("epochs", 1), ("steps", 1), ("batch_size", 2), ("checkpoint_every", 1)):
        if key in p and p[key] < low:
            raise where.error("pretrain", key, f"must be at least {low}")
    for key in ("learning_rate", "temperature"):
        if key in p and not (math.isfinite(p[key]) and p[key] > 0):
            raise where.error("pretrain", key, "must be a positive number")
    for key, high in (("warmup_ratio", 1.0), ("mask_probability", 1.0)):
        if key in p and not 0 <= p[key] < high:
            raise where.error("pretrain", key, f"must be in [0, {high:g})")
    if "weight_decay" in p and p["weight_decay"] < 0:
        raise where.error("pretrain", "weight_decay", "must not be negative")
    if "objective" in p and not p["objective"].strip():
        raise where.error("pretrain", "objective", "must name an objective")
    return PretrainSection(**p)


def _check_space_entry(where: _Where, name: str, spec: Any) -> None:
    section = "search.space"
    if isinstance(spec, list):
        if not spec:
            raise where.error(section, name, "an empty list leaves nothing to choose")
        return
    if isinstance(spec, (str, int, float, bool)):
        return
    if not isinstance(spec, dict):
        raise where.error(section, name, "use a list (categorical), a value (fixed) or "
                          "{ low = ..., high = ..., log = true }")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown:
        bad = sorted(unknown)[0]
        raise where.error(section, name, f"unknown range key {bad!r}"
                          f"{did_you_mean(bad, ['low', 'high', 'log', 'step'])}; use low, high, log, step")
    if "low" not in spec or "high" not in spec:
        raise where.error(section, name, "a range needs both low and high")
    low, high = spec["low"], spec["high"]
    for k, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise where.error(section, name, f"{k} must be a number, got {v!r}")
    if low > high:
        raise where.error(section, name, f"impossible range: low ({low}) > high ({high})")
    if spec.get("log") and low <= 0:
        raise where.error(section, name, f"a log range needs low > 0, got {low}")
    if "step" in spec and (isinstance(spec["step"], bool) or not isinstance(spec["step"], (int, float))
                           or spec["step"] <= 0):
        raise where.error(section, name, "step must be a positive number")
    if "log" in spec and not isinstance(spec["log"], bool):
        raise where.error(section, name, "log must be true or false")
