"""Parameter-efficient fine-tuning strategies: ``lora``, ``ia3`` (through the ``peft`` package)
and ``bitfit``.

A trial with one of these strategies trains the task head (always) plus a small part of the
backbone:

* ``lora``: low-rank updates ``W + (alpha / r) * B A`` on the backbone's target modules
  (``lora_rank``, ``lora_alpha``, ``lora_dropout``, ``lora_targets``);
* ``ia3``: learned rescaling vectors ((IA)^3: keys, values and feed-forward activations);
* ``bitfit``: biases and normalisation layers only (no ``peft`` needed).

Which modules adapters go into is the backbone's business: :meth:`Backbone.peft_targets
<automl_pt.model.Backbone.peft_targets>` (supplied by the plugin that owns the backbone; the
core knows no model families). :func:`find_targets` is a helper plugins may use to compute it
from module names. Adapters are injected in place into the backbone module (``peft``'s tuner
classes, as ``inject_adapter_in_model`` does), so ``Backbone.encode`` keeps working; after
training :meth:`Adapters.merge` folds them into the base weights (``merge_and_unload``), so the
saved trial weights and every export have the backbone's own architecture and load without
``peft``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import BackboneError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..model import Backbone

PEFT_STRATEGIES = ("lora", "ia3")
ADAPTER_STRATEGIES = (*PEFT_STRATEGIES, "bitfit")
#: ``lora_targets`` values: the backbone's recommended modules, or every adaptable layer
LORA_TARGETS = ("default", "all")
#: values used when a trial's params do not name them (e.g. ``strategy = "lora"`` fixed)
LORA_DEFAULTS = {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05, "lora_targets": "default"}
PEFT_HINT = "install it with: pip install 'automl-pt[peft]' (or pip install peft)"

_BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|blocks|block|h|stages)\.\d+\.")
_ATTENTION = re.compile(r"attn|attention", re.IGNORECASE)


def find_targets(module: "nn.Module", query_value: Iterable[str], key_value: Iterable[str],
                 prefix: str = "") -> dict[str, list[str]]:
    """Adapter targets of ``module`` by module names, for :meth:`Backbone.peft_targets`.

    Only layers inside numbered blocks (``layer.3.``, ``layers.3.``, ``blocks.3.``...) count:
    ``nn.Linear`` and ungrouped ``nn.Conv1d`` / ``nn.Conv2d``. A layer is an attention layer when
    its path mentions ``attn`` / ``attention``; a feed-forward down-projection when it is not
    and has more inputs than outputs. ``query_value`` / ``key_value`` are the last name parts of
    the attention projections LoRA / (IA)^3 adapt (the plugin knows its libraries' names).
    Returns full names (``prefix`` + name):

    * ``default``: attention projections named in ``query_value``, else (a network without
      attention) the pointwise (1x1) convolutions and linear layers;
    * ``all``: every such layer;
    * ``ia3``: projections named in ``key_value`` (else the pointwise layers) plus the
      down-projections; ``ia3_feedforward``: the down-projections (scaled on their input).

    Empty lists when nothing matches (the backbone then offers no adapters)."""
    from torch import nn

    qv, kv = set(query_value), set(key_value)
    layers: list[tuple[str, Any]] = []
    for name, m in module.named_modules():
        if not _BLOCK.search(name):
            continue
        if isinstance(m, nn.Linear) or (isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups == 1):
            layers.append((name, m))

    def last(name: str) -> str:
        return name.rsplit(".", 1)[-1]

    def sizes(m: Any) -> tuple[int, int]:
        return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)

    def pointwise(m: Any) -> bool:
        return isinstance(m, nn.Linear) or all(k == 1 for k in m.kernel_size)

    attention = [n for n, _ in layers if _ATTENTION.search(n)]
    down = [n for n, m in layers if n not in attention and sizes(m)[0] > sizes(m)[1]]
    plain = [n for n, m in layers if pointwise(m)]
    default = [n for n in attention if last(n) in qv] or plain
    ia3_base = [n for n in attention if last(n) in kv] or [n for n in plain if n not in down]
    ia3 = list(dict.fromkeys([*ia3_base, *down]))
    out = {"default": default, "all": [n for n, _ in layers], "ia3": ia3 if down or ia3_base else [],
           "ia3_feedforward": down}
    return {k: [prefix + n for n in v] for k, v in out.items()}


def count_parameters(module: "nn.Module") -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


@dataclass
class Adapters:
    """The adapters injected into a backbone; :meth:`merge` folds them in and removes them."""

    tuner: Any
    strategy: str

    def merge(self) -> None:
        """Fold the adapters into the base weights and put the backbone's own modules back
        (``merge_and_unload``, in place): the backbone's ``state_dict`` has its original keys."""
        self.tuner.merge_and_unload()


def _trial_module_params(backbone: "Backbone") -> list[Any]:
    prefixes = tuple(getattr(backbone, "trial_modules", ()))
    return [p for n, p in backbone.named_parameters() if prefixes and n.startswith(prefixes)]


def apply_strategy(backbone: "Backbone", params: dict) -> Adapters | None:
    """Prepare ``backbone`` for ``params["strategy"]`` when it is an adapter strategy: freeze
    it and make trainable only what the strategy trains (plus the backbone's ``trial_modules``,
    e.g. attention pooling, which are new and always train). Returns the :class:`Adapters` to
    merge after training (``lora`` / ``ia3``), ``None`` otherwise (``bitfit``, other strategies:
    the backbone is left as it is).

    Raises :class:`BackboneError` naming the backbone when it offers no adapter targets (or
    none for the requested ``lora_targets``), and when ``peft`` is not installed."""
    strategy = params.get("strategy")
    if strategy not in ADAPTER_STRATEGIES:
        return None
    if strategy == "bitfit":
        keep = {id(p) for p in _trial_module_params(backbone)}
        for module in backbone.modules():
            norm = "norm" in type(module).__name__.lower()
            for name, p in module.named_parameters(recurse=False):
                if p.requires_grad:  # parameters frozen on purpose stay frozen
                    p.requires_grad_(norm or name == "bias" or id(p) in keep)
        return None
    targets = backbone.peft_targets() or {}
    what = f"backbone {backbone.name or type(backbone).__name__!r} ({type(backbone).__name__})"
    if strategy == "lora":
        choice = str(params.get("lora_targets", LORA_DEFAULTS["lora_targets"]))
        modules = targets.get(choice)
        if not modules:
            offered = ", ".join(k for k in LORA_TARGETS if targets.get(k)) or "none"
            raise BackboneError(f"strategy 'lora' with lora_targets = {choice!r}: {what} offers no "
                                f"LoRA target modules for it (offered: {offered}); choose another "
                                "strategy or backbone")
    else:
        modules = targets.get("ia3")
        if not modules:
            raise BackboneError(f"strategy 'ia3': {what} offers no (IA)^3 target modules; choose "
                                "another strategy or backbone")
    try:
        import peft
    except ImportError as exc:
        raise BackboneError(f"strategy {strategy!r} needs the peft package, which is not "
                            f"installed; {PEFT_HINT}") from exc
    if strategy == "lora":
        rank = int(params.get("lora_rank", LORA_DEFAULTS["lora_rank"]))
        config = peft.LoraConfig(r=rank, lora_alpha=float(params.get("lora_alpha", LORA_DEFAULTS["lora_alpha"])),
                                 lora_dropout=float(params.get("lora_dropout", LORA_DEFAULTS["lora_dropout"])),
                                 target_modules=list(modules), bias="none")
        tuner_cls = peft.LoraModel
    else:
        feedforward = [m for m in targets.get("ia3_feedforward", []) if m in modules]
        config = peft.IA3Config(target_modules=list(modules), feedforward_modules=feedforward)
        tuner_cls = peft.IA3Model
    keep = _trial_module_params(backbone)
    # the tuner injects in place into ``backbone`` and freezes everything else in it; it is kept
    # outside the module tree (its parameters are the backbone's)
    tuner = tuner_cls(backbone, config, "default")
    for p in keep:
        p.requires_grad_(True)
    return Adapters(tuner, strategy)
