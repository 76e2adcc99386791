"""The values of the trial parameter ``init`` (torch-free: the built-in search space names them)."""

#: ``init``: where a trial's backbone weights come from (see automl_pt.engine.pretrain). "continued" is
# the [pretrain] stage's checkpoint; "random" (same architecture, random weights) is accepted
# by every backbone loader, for baselines, but not searched by default.
INIT_CHOICES = ("pretrained", "continued")
RANDOM_INIT = "random"
