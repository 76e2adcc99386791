"""``[study] preset``: one word that sets the study's budget, search space, pruning and fidelity.

A preset only fills in what the study file leaves out: every key the user sets explicitly (in
``[study]``, ``[search]`` or per parameter in ``[search.space]``) wins over the preset's value.
The exact values are listed in the README's study-file section; ``tests/test_anytime.py`` checks
that the README and :data:`PRESETS` agree.
"""

from __future__ import annotations

from typing import Any

#: preset name -> {"study": {...}, "search": {...}, "space": {...}} (``space`` entries use the
#: ``[search.space]`` syntax; each is applied only where the search space has that parameter)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # a few minutes on a laptop CPU: the probe, then the top blocks trained on cached activations
    # (``partial``; whole-backbone fine-tuning on backbones that cannot be split), 2-4 epochs
    # of at least 50 optimizer steps, one batch size, losers stopped after their first epoch.
    # Measured against HF's hyperparameter search in docs/performance.md.
    "fast": {
        "study": {"trials": 6},
        "search": {"pruner": "auto"},
        "space": {"strategy": ["linear_probe", "partial"], "epochs": {"low": 2, "high": 4},
                  "min_steps": [50], "learning_rate": {"low": 1e-4, "high": 1e-3, "log": True},
                  "batch_size": [32]},
    },
    # the default search space with up to 4 epochs
    "balanced": {
        "study": {"trials": 20},
        "search": {"pruner": "auto"},
        "space": {"epochs": {"low": 1, "high": 4}},
    },
    # more trials and longer training; Hyperband spends the epochs on the promising trials
    "best": {
        "study": {"trials": 50},
        "search": {"pruner": "hyperband"},
        "space": {"epochs": {"low": 2, "high": 8}},
    },
}


def apply_preset(name: str, study: dict[str, Any], search: dict[str, Any]) -> dict[str, Any]:
    """Fill the preset's ``[study]`` and ``[search]`` values into ``study`` / ``search`` (the
    checked values of the study file's sections) where the file leaves them out, and return the
    preset's ``[search.space]`` entries for the parameters the file does not set."""
    preset = PRESETS[name]
    for key, value in preset["study"].items():
        study.setdefault(key, value)
    for key, value in preset["search"].items():
        search.setdefault(key, value)
    user_space = search.get("space", {})
    return {k: v for k, v in preset["space"].items() if k not in user_space}
