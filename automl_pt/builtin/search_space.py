"""The generic, transfer-aware default search space. Plugins override any entry (this
implementation runs last, so theirs win); the study's ``[search.space]`` overrides both."""

from __future__ import annotations

from ..plugins import hookimpl
from ..registry import Domain, Param

STRATEGIES = ("linear_probe", "full", "freeze_then_unfreeze", "partial")
# ``init``: where a trial's backbone weights come from (see automl_pt.pretrain). "continued" is
# the [pretrain] stage's checkpoint; "random" (same architecture, random weights) is accepted
# by every backbone loader, for baselines, but not searched by default.
INIT_CHOICES = ("pretrained", "continued")
RANDOM_INIT = "random"


# One configuration per strategy known to train well, tried before the search explores:
# {strategy: {param: value}}; the parameters it leaves out are searched as usual.
KNOWN_GOOD: dict[str, dict[str, object]] = {
    # top two blocks on cached activations, at a larger learning rate than full fine-tuning
    # wants (docs/performance.md: minilm-l6 on fortunes, 3 epochs: 0.863 vs 0.656 at 1e-4)
    "partial": {"top_layers": 2, "learning_rate": 5e-4, "head_lr_multiplier": 10.0},
}

POSITIVE = Domain("float", low=0.0, open_low=True)
FRACTION = Domain("float", low=0.0, high=1.0, open_high=True)      # [0, 1)
AT_LEAST_ONE = Domain("int", low=1)


def default_space() -> dict[str, Param]:
    """The core's parameters, each with the domain the training loop accepts (a plugin that
    redefines one keeps this domain unless it gives its own)."""
    params = [
        Param("strategy", "categorical", choices=STRATEGIES, domain=Domain("choice", choices=STRATEGIES)),
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
        # strategy "partial": how many top blocks train (on cached activations of the rest)
        Param("top_layers", "int", 1, 3, domain=AT_LEAST_ONE, when=("strategy", ("partial",))),
    ]
    return {p.name: p for p in params}


@hookimpl(trylast=True)
def automl_pt_search_space(task, config):
    space = default_space()
    if getattr(config, "pretrain", None) is not None:
        space["init"] = Param("init", "categorical", choices=INIT_CHOICES,
                              domain=Domain("choice", choices=(*INIT_CHOICES, RANDOM_INIT)))
    return space
