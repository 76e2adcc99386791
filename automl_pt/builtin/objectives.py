"""The built-in continued pre-training objective ``contrastive`` (SimCLR / SimCSE-style InfoNCE
over two views of each example; the views come from the modality's plugin), registered through
``automl_pt_register_objectives`` like a plugin's. The objective itself lives in
:mod:`automl_pt.engine.pretrain`, imported (with torch) only when a stage creates it."""

from __future__ import annotations

from typing import Any

from ..plugins import hookimpl
from ..registry import Objective


def _create_contrastive(backbone: Any, context: Any) -> Any:
    from ..engine.pretrain import create_contrastive

    return create_contrastive(backbone, context)


@hookimpl
def automl_pt_register_objectives(register):
    register.objective(Objective(
        name="contrastive", create=_create_contrastive,
        description="SimCLR/SimCSE-style InfoNCE over two views of each example (views from the "
                    "modality's plugin), on the pooled embedding through a projection head"))
