"""The generic, transfer-aware default search space. Plugins override any entry (this
implementation runs last, so theirs win); the study's ``[search.space]`` overrides both."""

from __future__ import annotations

from ..engine.inits import INIT_CHOICES, RANDOM_INIT
from ..train.adapters import ADAPTER_STRATEGIES, LORA_TARGETS
from ..plugins import hookimpl
from ..registry import Domain, Param
from ..tasks import CLASS_WEIGHTS

STRATEGIES = ("linear_probe", "full", "freeze_then_unfreeze", "partial")
#: every strategy a study may name: the searched ones plus the opt-in ones: parameter-efficient
#: (``lora``, ``ia3``, ``bitfit``: automl_pt.train.adapters) and ``setfit`` (contrastive pairs,
#: then the probe: automl_pt.train.contrastive); see docs/strategies.md
ALL_STRATEGIES = (*STRATEGIES, *ADAPTER_STRATEGIES, "setfit")
DEFAULT_MIN_STEPS = 150
DEFAULT_PATIENCE = 3

POSITIVE = Domain("float", low=0.0, open_low=True)
FRACTION = Domain("float", low=0.0, high=1.0, open_high=True)      # [0, 1)
AT_LEAST_ONE = Domain("int", low=1)
LORA = ("strategy", ("lora",))


def default_space() -> dict[str, Param]:
    """The core's parameters, each with the domain the training loop accepts (a plugin that
    redefines one keeps this domain unless it gives its own)."""
    params = [
        Param("strategy", "categorical", choices=STRATEGIES, domain=Domain("choice", choices=ALL_STRATEGIES)),
        Param("learning_rate", "float", 1e-5, 1e-3, log=True, domain=POSITIVE),
        Param("head_lr_multiplier", "float", 1.0, 100.0, log=True, domain=POSITIVE),
        Param("layer_decay", "float", 0.6, 1.0, domain=Domain("float", low=0.0, high=1.0, open_low=True)),
        Param("weight_decay", "float", 1e-6, 0.1, log=True, domain=Domain("float", low=0.0)),
        Param("warmup_ratio", "float", 0.0, 0.2, domain=FRACTION),
        Param("epochs", "int", 1, 5, domain=AT_LEAST_ONE),
        Param("batch_size", "categorical", choices=(16, 32), domain=AT_LEAST_ONE),
        Param("dropout", "float", 0.0, 0.3, domain=FRACTION),
        Param("label_smoothing", "float", 0.0, 0.2, domain=FRACTION),
        Param("schedule", "categorical", choices=("cosine", "linear"),
              domain=Domain("choice", choices=("cosine", "linear"))),
        # training length fits the data (automl_pt.train.training.planned_epochs): at least this many
        # optimizer steps, and early stopping after `patience` epochs without improvement (0: off)
        Param("min_steps", "categorical", choices=(DEFAULT_MIN_STEPS,), domain=Domain("int", low=0)),
        Param("patience", "categorical", choices=(DEFAULT_PATIENCE,), domain=Domain("int", low=0)),
        # LoRA's own knobs, suggested only in lora trials
        Param("lora_rank", "categorical", choices=(4, 8, 16), domain=AT_LEAST_ONE, condition=LORA),
        Param("lora_alpha", "int", 4, 64, log=True, domain=AT_LEAST_ONE, condition=LORA),
        Param("lora_dropout", "float", 0.0, 0.2, domain=FRACTION, condition=LORA),
        Param("lora_targets", "categorical", choices=LORA_TARGETS,
              domain=Domain("choice", choices=LORA_TARGETS), condition=LORA),
        Param("top_layers", "int", 1, 3, domain=AT_LEAST_ONE, condition=("strategy", ("partial",))),
        # pairs drawn per labelled example in setfit trials
        Param("setfit_pairs", "categorical", choices=(20,), domain=AT_LEAST_ONE,
              condition=("strategy", ("setfit",))),
        # classification and multi-label: "balanced" weighs classes (positives of a label) by
        # their rarity in the loss; fixed "none" unless the classes are imbalanced (then the
        # study searches both, automl_pt.engine.study) or the study file lists them
        Param("class_weights", "categorical", choices=("none",),
              domain=Domain("choice", choices=CLASS_WEIGHTS)),
    ]
    return {p.name: p for p in params}


@hookimpl(trylast=True)
def automl_pt_search_space(task, config):
    space = default_space()
    kind = getattr(task, "kind", "classification")
    if kind != "classification":  # soft single-label targets mean nothing for these
        space.pop("label_smoothing")
    if kind == "regression":
        space.pop("class_weights")
    if getattr(config, "pretrain", None) is not None:
        space["init"] = Param("init", "categorical", choices=INIT_CHOICES,
                              domain=Domain("choice", choices=(*INIT_CHOICES, RANDOM_INIT)))
    elif "init" in (getattr(getattr(config, "search", None), "space", None) or {}):
        # named without [pretrain]: the shipped weights, or the random-init baseline of a transfer study
        space["init"] = Param("init", "categorical", choices=(INIT_CHOICES[0],),
                              domain=Domain("choice", choices=(INIT_CHOICES[0], RANDOM_INIT)))
    return space
