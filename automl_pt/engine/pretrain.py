"""Continued pre-training of a backbone on unlabeled data, before the fine-tuning trials.

A study with a ``[pretrain]`` section runs :func:`run_pretraining` once per backbone of the
search (in :meth:`automl_pt.Study.run`, before any trial) and adds the categorical
hyperparameter ``init`` to the search: ``"pretrained"`` (the original weights) or
``"continued"`` (the weights after continued pre-training). Every backbone loader also honours
``init = "random"`` (same architecture, random weights; see :func:`wants_random_init`).

Objectives are registered by plugins (``automl_pt_register_objectives``):

* ``contrastive`` (built in, :mod:`automl_pt.builtin.objectives`): SimCLR / SimCSE-style InfoNCE over two views of each example, through
  the backbone's pooled embedding (:meth:`Backbone.encode`) and a small projection head that is
  discarded afterwards. The views come from the modality's plugin
  (``automl_pt_pretrain_views``);
* ``mlm`` (text plugin): masked language modelling;
* any third-party objective: a :class:`PretrainObjective` whose ``loss(batch, generator)`` is
  minimised.

The stage is cached and resumable. Its directory is ``<run dir>/pretrain/<key>/``, where the
key hashes the backbone, the unlabeled data's fingerprint, the objective and every setting:

* ``resume.pt``: model + optimizer + scheduler + step + loss curve, written atomically every
  ``checkpoint_every`` steps (read back with ``weights_only=True``); a killed run continues
  from it, losing at most ``checkpoint_every - 1`` steps;
* ``backbone.safetensors`` + ``done.json``: the final backbone weights; ``done.json`` (written
  last) marks the stage finished, so a later run skips it;
* ``losses.parquet``: the loss curve (``backbone, objective, step, epoch, loss, key``), which
  the results store ingests into its ``pretrain_metrics`` table
  (:meth:`automl_pt.storage.store.Results.pretrain_curves`).

Each step's random numbers (data order per epoch, views, dropout) derive from
``(study.seed, step)``, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .inits import RANDOM_INIT
from ..errors import AutomlError, BackboneError, ConfigError, PluginError
from .progress import LiveBar
from ..registry import Objective, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from ..spec.config import StudyConfig
    from ..spec.data import Split
    from ..model import Backbone, Preprocessor
    from ..plugins import PluginHost
    from ..registry import TaskInfo

PRETRAIN_DIR = "pretrain"
FINAL_FILE = "backbone.safetensors"
DONE_FILE = "done.json"
RESUME_FILE = "resume.pt"
LOSSES_FILE = "losses.parquet"
LOSS_COLUMNS = ("backbone", "objective", "step", "epoch", "loss", "key")
FORMAT_VERSION = 1
PROJECTION_DIM = 128
MAX_GRAD_NORM = 1.0
LOSS_SYNC_EVERY = 16


def wants_random_init(options: dict) -> bool:
    """Whether a backbone loader should build its architecture with random weights: the trial's
    ``init`` hyperparameter (``options["params"]["init"]``) is ``"random"``."""
    return (options.get("params") or {}).get("init") == RANDOM_INIT


# -- objectives ------------------------------------------------------------------------------
@dataclass
class ObjectiveContext:
    """What an objective's ``create(backbone, context)`` gets besides the backbone."""

    modality: str
    settings: Any                   # the study's PretrainSection
    preprocessor: "Preprocessor"
    host: "PluginHost"
    seed: int
    options: dict = field(default_factory=dict)   # [pretrain.options]

    def views(self, backbone: "Backbone") -> Callable:
        """The modality plugin's ``views(batch, generator) -> (a, b)``; :class:`PluginError`
        when no plugin provides views for this backbone."""
        views = self.host.hook.automl_pt_pretrain_views(
            backbone=backbone, modality=self.modality, options=asdict(self.settings))
        if views is None:
            raise PluginError(f"no plugin provides contrastive views for {self.modality} backbone "
                              f"{getattr(backbone, 'name', '?')!r} (hook automl_pt_pretrain_views)")
        return views


class PretrainObjective(nn.Module):
    """An ``nn.Module`` that owns ``self.backbone`` and whatever heads the objective needs.

    ``loss(batch, generator)`` returns the scalar loss of one preprocessed batch (on the
    device); random numbers must come from ``generator`` (a seeded CPU ``torch.Generator``) or
    the global torch RNG (seeded per step), so that a resumed run repeats the same steps.
    Only ``self.backbone``'s weights are kept after pre-training.
    """

    def __init__(self, backbone: "Backbone"):
        super().__init__()
        self.backbone = backbone

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (NT-Xent) over ``2N`` embeddings: row ``i`` of ``a`` must pick row ``i``
    of ``b`` (and vice versa) among the other ``2N - 1`` embeddings of the batch."""
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=-1)
    sim = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, targets)


def _concat_views(a: dict, b: dict) -> dict | None:
    """Both views in one batch (one forward pass) when their tensors line up."""
    if a.keys() != b.keys() or any(a[k].shape[1:] != b[k].shape[1:] for k in a):
        return None
    return {k: torch.cat([a[k], b[k]]) for k in a}


class ContrastiveObjective(PretrainObjective):
    """InfoNCE over two views of each example: ``projection(backbone.encode(view))``, with a
    two-layer projection head (discarded after pre-training)."""

    def __init__(self, backbone: "Backbone", views: Callable, temperature: float,
                 projection_dim: int = PROJECTION_DIM):
        super().__init__(backbone)
        self.views = views
        self.temperature = float(temperature)
        dim = int(backbone.feature_dim)
        self.projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, projection_dim))

    def loss(self, batch, generator):
        a, b = self.views(batch, generator)
        both = _concat_views(a, b)
        if both is not None:
            za, zb = self.projection(self.backbone.encode(both).float()).chunk(2)
        else:
            za = self.projection(self.backbone.encode(a).float())
            zb = self.projection(self.backbone.encode(b).float())
        return info_nce(za, zb, self.temperature)


def create_contrastive(backbone: "Backbone", context: ObjectiveContext) -> ContrastiveObjective:
    """The built-in ``contrastive`` objective (registered by :mod:`automl_pt.builtin.objectives`)."""
    return ContrastiveObjective(backbone, context.views(backbone), context.settings.temperature,
                                int(context.options.get("projection_dim", PROJECTION_DIM)))


def objectives(host: "PluginHost") -> dict[str, Objective]:
    """Every registered objective (``automl_pt_register_objectives``): the built-in
    ``contrastive`` and what plugins add."""
    return host.registry.objectives


# -- the plan: data, cache keys, directories ---------------------------------------------------
class PretrainPlan:
    """The ``[pretrain]`` stage of one study: its unlabeled data (read once) and the cache
    directory of each backbone. Cheap to build; reads the data on first use."""

    def __init__(self, config: "StudyConfig", host: "PluginHost", task: "TaskInfo"):
        if config.pretrain is None:
            raise ConfigError(f"{config.source or 'config'}: the study has no [pretrain] section")
        self.config, self.host, self.task = config, host, task
        self.settings = config.pretrain
        self._split: "Split | None" = None
        #: the options plugins derive from the study's training inputs
        #: (``automl_pt_data_options``: a speech-recognition study's Whisper keeps its decoder),
        #: as every trial's backbone gets them: the stage trains, and saves, that backbone
        self.derived: dict[str, Any] = {}

    @property
    def root(self) -> Path:
        return self.config.run_dir / PRETRAIN_DIR

    @property
    def data_options(self) -> dict[str, Any]:
        cfg = self.config
        options = {"max_length": cfg.data.max_length, "image_size": cfg.data.image_size,
                   "base_dir": str(cfg.source.parent) if cfg.source else "."}
        for key, value in self.derived.items():
            options.setdefault(key, value)
        return options

    def objective(self) -> Objective:
        """The configured objective; :class:`ConfigError` (file:line) when it is unknown or not
        for this task's modality."""
        from ..spec.config import _Where

        cfg = self.config
        where = _Where.of(cfg)
        known = objectives(self.host)
        name = self.settings.objective
        if name not in known:
            raise where.error("pretrain", "objective", f"unknown objective {name!r}"
                              f"{did_you_mean(name, list(known))}; registered: {', '.join(sorted(known))}")
        obj = known[name]
        if obj.modalities and self.task.modality not in obj.modalities:
            raise where.error("pretrain", "objective", f"objective {name!r} is for "
                              f"{', '.join(obj.modalities)} backbones; task {self.task.name!r} is "
                              f"{self.task.modality}")
        return obj

    def split(self) -> "Split":
        if self._split is None:
            from ..spec.data import load_unlabeled

            self._split = load_unlabeled(self.settings.data, self.config, self.task, self.host.registry)
        return self._split

    def backbone_info(self, name: str):
        from ..plugins import resolve_backbone

        info = resolve_backbone(name, self.task.modality, self.host)
        if info is None:
            raise BackboneError(f"backbone {name!r} cannot be resolved for {self.task.modality}")
        return info

    def key(self, name: str) -> str:
        """Hash of the backbone, the data fingerprint, the objective and every setting."""
        info = self.backbone_info(name)
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.settings).items()
                    if k != "data"}
        material = {"version": FORMAT_VERSION, "backbone": name, "source": info.source,
                    "data": self.split().fingerprint(), "settings": settings,
                    "seed": self.config.study.seed,
                    "data_options": {k: v for k, v in self.data_options.items() if k != "base_dir"}}
        blob = json.dumps(material, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def directory(self, name: str) -> Path:
        return self.root / self.key(name)

    def checkpoint(self, name: str) -> Path | None:
        """The finished stage's directory for backbone ``name``, or ``None``."""
        directory = self.directory(name)
        return directory if _is_done(directory) else None


def _is_done(directory: Path) -> bool:
    return (directory / DONE_FILE).is_file() and (directory / FINAL_FILE).is_file()


def _plan_of(study: Any, prepared: Any = None) -> PretrainPlan:
    """The study's plan, kept on its prepared state (the unlabeled data is read once)."""
    prepared = prepared or study.prepare()
    if getattr(prepared, "pretrain", None) is None:
        prepared.pretrain = PretrainPlan(study.config, prepared.host, prepared.task)
        prepared.pretrain.derived = derived_options(prepared.host, prepared.task,
                                                    prepared.data.train.inputs)
    return prepared.pretrain


def derived_options(host: Any, task: Any, inputs: Any) -> dict[str, Any]:
    """The options plugins derive from a study's training ``inputs``
    (``automl_pt_data_options``; the first plugin to name a key wins)."""
    out: dict[str, Any] = {}
    for derived in host.hook.automl_pt_data_options(task=task, inputs=inputs):
        for key, value in (derived or {}).items():
            out.setdefault(key, value)
    return out


def checkpoint_for(study: Any, backbone_name: str) -> Path | None:
    """The continued-pretraining checkpoint directory of ``backbone_name`` in ``study`` (an
    :class:`automl_pt.Study`) when its ``[pretrain]`` stage has finished, else ``None``.
    The directory holds ``backbone.safetensors`` (the backbone's state dict), ``done.json``
    and ``losses.parquet``."""
    if study.config.pretrain is None:
        return None
    return _plan_of(study).checkpoint(backbone_name)


# -- loading a checkpoint into a backbone ------------------------------------------------------
def load_backbone_weights(backbone: "Backbone", directory: Path, name: str = "") -> None:
    """Load ``directory/backbone.safetensors`` into ``backbone``: every backbone tensor must be
    in the file with the same shape (modules a trial adds on top, listed in the backbone's
    ``trial_modules`` prefixes, may be missing). Raises :class:`BackboneError` naming the file."""
    from safetensors.torch import load_file

    path = Path(directory) / FINAL_FILE
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise BackboneError(f"backbone {name!r}: cannot read continued-pretraining checkpoint "
                            f"{path}: {type(exc).__name__}: {exc}") from exc
    from ..model import state_mismatch

    own = backbone.state_dict()
    mismatch = state_mismatch(own, state, tuple(getattr(backbone, "trial_modules", ())))
    if mismatch:
        raise BackboneError(f"backbone {name!r}: continued-pretraining checkpoint {path} does not "
                            f"fit the backbone ({mismatch})")
    backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


# -- the stage ---------------------------------------------------------------------------------
def run_pretraining(study: Any, prepared: Any, backbone_name: str, progress: bool = True,
                    console: Any = None) -> Path:
    """Continue pre-training ``backbone_name`` on the study's ``[pretrain] data`` and return the
    checkpoint directory (``backbone.safetensors`` inside). Cached: a finished stage with the
    same key returns at once; an interrupted one resumes from its last step checkpoint.
    ``study`` is an :class:`automl_pt.Study`, ``prepared`` what ``study.prepare()`` returned.
    Raises :class:`ConfigError` (no ``[pretrain]``, unknown objective), :class:`DataError`,
    :class:`BackboneError`, :class:`PluginError`."""
    from ..storage.rundir import claim_run_dir

    claim_run_dir(study.config)   # the stage writes RUN_DIR/pretrain/
    plan = _plan_of(study, prepared)
    objective_info = plan.objective()
    directory = plan.directory(backbone_name)
    if _is_done(directory):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    _Stage(plan, objective_info, backbone_name, directory, progress, console).run()
    return directory


class _Stage:
    """One backbone's pre-training loop (plain PyTorch, top to bottom in :meth:`run`)."""

    def __init__(self, plan: PretrainPlan, objective_info: Objective, name: str, directory: Path,
                 progress: bool, console: Any):
        self.plan, self.objective_info, self.name = plan, objective_info, name
        self.directory, self.progress, self.console = directory, progress, console
        self.settings = plan.settings
        self.key = directory.name

    def run(self) -> None:
        from ..core.devices import resolve_device
        from ..train.training import device_autocast, lr_lambda
        from ..core.seeds import seed_everything

        cfg, s = self.plan.config, self.settings
        device = resolve_device(cfg.resources.devices)
        if cfg.resources.num_threads:
            torch.set_num_threads(cfg.resources.num_threads)
        seed = cfg.study.seed
        seed_everything(seed)
        split = self.plan.split()
        info = self.plan.backbone_info(self.name)
        backbone = info.load({**self.plan.data_options, "params": {"init": "pretrained"}})
        prep = self._preprocessor(backbone, split)
        data = self._encoded(prep, split)
        context = ObjectiveContext(self.plan.task.modality, s, prep, self.plan.host, seed,
                                   dict(s.options))
        objective = self.objective_info.create(backbone, context)
        objective.to(device)
        n = len(split)
        batch_size = min(s.batch_size, n)
        if batch_size < 2:
            raise AutomlError(f"{split.source}: pre-training needs at least 2 unlabeled examples")
        steps_per_epoch = n // batch_size
        total = int(s.steps or s.epochs * steps_per_epoch)
        optimizer = torch.optim.AdamW(_param_groups(objective, s.weight_decay), lr=s.learning_rate,
                                      fused=device.type == "cuda")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, s.warmup_ratio, "cosine"))
        step, losses = 0, []
        resumed = self._resume(objective, optimizer, scheduler)
        if resumed is not None:
            step, losses = resumed
        started, first_step = time.perf_counter(), step
        with _Bar(self.progress, self.console, f"pretrain {self.name} ({self.objective_info.name})",
                  total, step) as bar:
            if step:
                bar.log(f"pretrain {self.name}: resuming at step {step}/{total}")
            objective.train()
            order, order_epoch = None, -1
            pending: list = []  # (step, epoch, loss on the device): read back every few steps
            while step < total:
                epoch = step // steps_per_epoch
                if epoch != order_epoch:
                    order = torch.randperm(n, generator=torch.Generator().manual_seed(
                        _mix(seed, "order", epoch)))
                    order_epoch = epoch
                pos = step % steps_per_epoch
                idx = order[pos * batch_size:(pos + 1) * batch_size]
                generator = torch.Generator().manual_seed(_mix(seed, "views", step))
                torch.manual_seed(_mix(seed, "dropout", step))
                batch = {k: v.to(device, non_blocking=True)
                         for k, v in prep.collate({k: v[idx] for k, v in data.items()}).items()}
                optimizer.zero_grad(set_to_none=True)
                with device_autocast(device):
                    loss = objective.loss(batch, generator)
                loss.float().backward()
                torch.nn.utils.clip_grad_norm_(objective.parameters(), MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                step += 1
                pending.append((step, epoch + 1, loss.detach().float()))
                bar.advance()
                checkpoint = step < total and step % s.checkpoint_every == 0
                if checkpoint or step == total or len(pending) >= LOSS_SYNC_EVERY:
                    losses += self._read_losses(pending)
                    bar.show_loss(losses[-1][2])
                    pending = []
                if checkpoint:
                    self._save_resume(objective, optimizer, scheduler, step, losses)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        self._finish(backbone, losses, {
            "backbone": self.name, "source": info.source, "objective": self.objective_info.name,
            "key": self.key, "steps": total, "epochs": (total + steps_per_epoch - 1) // steps_per_epoch,
            "examples": n, "batch_size": batch_size, "resumed_from_step": resumed[0] if resumed else 0,
            "examples_per_s": (step - first_step) * batch_size / max(seconds, 1e-9),
            "device": str(device), "settings": {k: str(v) if isinstance(v, Path) else v
                                                for k, v in asdict(s).items()},
            "final_loss": losses[-1][2] if losses else None})

    def _read_losses(self, pending: list) -> list[tuple[int, int, float]]:
        """Losses of the last steps, read back from the device in one transfer (a per-step
        read would wait for the device every step). A non-finite loss stops the stage."""
        values = torch.stack([v for _, _, v in pending]).tolist()
        rows = [(st, ep, float(v)) for (st, ep, _), v in zip(pending, values)]
        for st, _, value in rows:
            if not math.isfinite(value):
                raise AutomlError(f"pretrain {self.name}: the loss became {value} at step {st}; "
                                  "lower [pretrain] learning_rate")
        return rows

    def _preprocessor(self, backbone: "Backbone", split: "Split") -> "Preprocessor":
        opts = self.plan.data_options
        prep = self.plan.host.hook.automl_pt_preprocessor(backbone=backbone, task=self.plan.task,
                                                          options=opts)
        prep = prep or backbone.preprocessor(opts)
        prep.fit(split.inputs)
        return prep

    def _encoded(self, prep: "Preprocessor", split: "Split") -> dict:
        from ..core.io import cached_tensors

        cache = self.plan.config.run_dir / "cache" / f"encoded-{prep.fingerprint}-{split.fingerprint()}.safetensors"
        return cached_tensors(cache, lambda: prep.encode(split.inputs))

    # -- checkpoints ---------------------------------------------------------------------------
    def _resume(self, objective, optimizer, scheduler) -> tuple[int, list] | None:
        path = self.directory / RESUME_FILE
        if not path.is_file():
            return None
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            objective.load_state_dict(state["objective"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except Exception as exc:
            raise AutomlError(f"pretrain {self.name}: cannot resume from {path} "
                              f"({type(exc).__name__}: {exc}); delete it to start over") from exc
        return int(state["step"]), [tuple(row) for row in state["losses"]]

    def _save_resume(self, objective, optimizer, scheduler, step: int, losses: list) -> None:
        path = self.directory / RESUME_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step,
                    "losses": [list(r) for r in losses]}, str(tmp))
        os.replace(tmp, path)
        self._write_losses(losses)

    def _write_losses(self, losses: list) -> None:
        import pandas as pd

        from ..core.io import atomic_write_parquet

        frame = pd.DataFrame([{"backbone": self.name, "objective": self.objective_info.name,
                               "step": st, "epoch": ep, "loss": lo, "key": self.key}
                              for st, ep, lo in losses], columns=list(LOSS_COLUMNS))
        frame = frame.astype({"step": "int64", "epoch": "int64", "loss": "float64"})
        atomic_write_parquet(frame, self.directory / LOSSES_FILE)

    def _finish(self, backbone: "Backbone", losses: list, meta: dict) -> None:
        from ..core.io import save_state

        save_state(backbone.state_dict(), self.directory / FINAL_FILE)
        self._write_losses(losses)
        tmp = self.directory / f".{DONE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp, self.directory / DONE_FILE)
        (self.directory / RESUME_FILE).unlink(missing_ok=True)


def _mix(seed: int, purpose: str, value: int) -> int:
    digest = hashlib.sha256(f"{seed}|{purpose}|{value}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _param_groups(module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and 1-d (norm) weights."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": float(weight_decay)},
            {"params": no_decay, "weight_decay": 0.0}]


class _Bar(LiveBar):
    """A rich progress bar for one backbone's stage (a no-op when disabled)."""

    def __init__(self, enabled: bool, console: Any, label: str, total: int, completed: int):
        self.enabled, self.console, self.label = enabled, console, label
        self.total, self.completed = total, completed
        self._progress = None

    def __enter__(self) -> "_Bar":
        if self.enabled:
            from .progress import progress_bar

            self._progress = progress_bar(self.console)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total,
                                                 completed=self.completed, info="")
        return self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1)

    def show_loss(self, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, info=f"loss {loss:.4f}")
