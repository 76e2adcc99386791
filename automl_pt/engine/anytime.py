"""The study as an anytime process: ``best/`` holds the best trial so far, from the first finished
trial on.

After every trial the driver asks :class:`BestExporter` to export the study's best trial when it
changed; the export goes through :func:`automl_pt.export.predictor.export_best` (a staged folder swapped into
place), so a study stopped at any moment (Ctrl-C, SIGTERM, ``[study] timeout``) leaves a loadable
``best/`` with the best model so far. These exports skip the test split: it is scored once, by
the export at the end of the study.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from ..errors import AutomlError


class BestExporter:
    """Exports the best trial of a running study to ``<run dir>/best`` whenever it changes."""

    def __init__(self, study: Any, prepared: Any, log: Callable[[str], None] | None = None):
        self.study, self.prepared = study, prepared
        self.log = log or (lambda message: None)
        self.exported = _exported_trial(study.run_dir / "best")
        self._runner = None

    def update(self, ostudy: Any) -> bool:
        """Export the best trial if it is not the one in ``best/`` and its weights are on this
        machine; returns whether it exported. An export that fails is logged, not raised (the
        study goes on; the export at its end reports the problem)."""
        from ..storage.store import best_trial

        best = best_trial(ostudy)
        if best is None or best.number == self.exported:
            return False
        runner = self._trial_runner()
        if not (runner.trial_dir(best.number) / "model.safetensors").exists():
            return False   # trained on another machine: exported at the end, or by automl-pt export
        from ..export.predictor import export_best

        try:
            export_best(self.study, self.prepared, ostudy, runner, score_test=False)
        except (AutomlError, OSError, RuntimeError, ValueError) as exc:
            self.log(f"[yellow]could not export trial {best.number} to best/: {exc}[/]")
            return False
        self.exported = best.number
        self.log(f"best/ now holds trial {best.number} ({self.prepared.metric} = {best.value:.4g})")
        return True

    def _trial_runner(self) -> Any:
        """A CPU runner (the devices belong to the workers) kept for the study's lifetime, so
        its preprocessors are fitted once."""
        if self._runner is None:
            import torch

            from .trial import TrialRunner

            p = self.prepared
            self._runner = TrialRunner(self.study.config, p.host, p.task, p.data, p.space,
                                       torch.device("cpu"), self.study.run_dir)
        return self._runner


def _exported_trial(folder: Any) -> int | None:
    try:
        return int(json.loads((folder / "automl_pt.json").read_text(encoding="utf-8"))["trial"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
