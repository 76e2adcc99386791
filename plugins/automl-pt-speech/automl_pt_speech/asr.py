"""Speech recognition: transcripts as targets, WER / CER, CTC and sequence-to-sequence heads.

Targets are kept backbone-independent: a split's transcripts are a ``(clips, longest)`` matrix of
Unicode code points padded with :data:`automl_pt.tasks.IGNORE`, so one encoded data set serves
every backbone. What reads them depends on the backbone (:meth:`SpeechRecognitionTask.make_head`):

* a backbone that carries a text decoder (``decodes_text``: Whisper loaded as
  ``WhisperForConditionalGeneration``) gets :class:`Seq2SeqHead`: in training it tokenizes the
  transcripts with the backbone's tokenizer and returns the decoder's cross-entropy (teacher
  forcing; the model computes its own loss), otherwise it generates (greedy, or
  ``num_beams``) and returns the text as code points;
* any other audio encoder (wav2vec2, HuBERT, WavLM...) gets :class:`CTCHead`: a linear layer per
  frame over the training transcripts' characters plus a blank, CTC loss in training, greedy CTC
  decoding (repeats merged, blanks dropped) otherwise.

Scoring normalises both sides like Whisper's English normaliser (:func:`normalize`): lower case,
punctuation and filler words removed, spelled-out numbers as digits, contractions expanded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from automl_pt.errors import BackboneError, DataError, ModelLoadError
from automl_pt.tasks import IGNORE, random_subset, rows_text, Task

TASK = "speech-recognition"
#: the trial strategies a speech-recognition study offers (besides the core's ``full``):
#: ``decoder`` trains the decoder only, ``encoder_top`` the decoder and the top
#: ``top_encoder_layers`` encoder layers
SEQ2SEQ_STRATEGIES = ("decoder", "encoder_top", "full")
#: longest transcript generated, in tokens
MAX_NEW_TOKENS = 128
#: test transcripts the report shows: the clips of highest WER, then typical ones
WORST_SHOWN, TYPICAL_SHOWN = 5, 5


@lru_cache(maxsize=1)
def _normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # Whisper's British -> American spelling table (english.json) ships with the hub tokenizer,
    # not with transformers: without a network the mapping is empty (spellings kept as written)
    return EnglishTextNormalizer({})


def normalize(text: str) -> str:
    """``"Mr. Smith's 2 dogs, twenty-one cats!"`` -> ``"mister smith is 2 dogs 21 cats"``:
    transformers' ``EnglishTextNormalizer`` (Whisper's scoring normaliser)."""
    return _normalizer()(str(text))


def codes_to_texts(codes: Any) -> list[str]:
    """Rows of code points (padded with ``IGNORE``, ``-1`` or NaN) back to strings."""
    arr = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    out = []
    for row in arr:
        row = row[np.isfinite(row) & (row > 0)]
        out.append("".join(chr(int(c)) for c in row))
    return out


def texts_to_codes(texts: list[str], width: int | None = None) -> np.ndarray:
    """Strings as a ``(len(texts), longest)`` int64 code-point matrix padded with ``IGNORE``."""
    width = max([len(t) for t in texts] + [1]) if width is None else width
    out = np.full((len(texts), width), IGNORE, dtype=np.int64)
    for i, t in enumerate(texts):
        out[i, :len(t)] = [ord(c) for c in t]
    return out


def _as_texts(values: Any) -> list[str]:
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        return codes_to_texts(values)
    return [str(v) for v in values]


def word_error_rate(labels: Any, predictions: Any, probabilities: Any = None) -> float:
    """WER of ``predictions`` against ``labels`` after :func:`normalize` (jiwer, over the
    whole set: total edits / total reference words). A reference that normalises to nothing
    counts each predicted word as an insertion."""
    return _error_rate(labels, predictions, "wer")


def char_error_rate(labels: Any, predictions: Any, probabilities: Any = None) -> float:
    """CER (characters, spaces included) after :func:`normalize`, as jiwer computes it."""
    return _error_rate(labels, predictions, "cer")


def _error_rate(labels: Any, predictions: Any, which: str) -> float:
    import jiwer

    refs = [normalize(t) for t in _as_texts(labels)]
    hyps = [normalize(t) for t in _as_texts(predictions)]
    kept = [(r, h) for r, h in zip(refs, hyps) if r]
    if not kept:
        return float("nan")
    errors = sum(len(h.split()) if which == "wer" else len(h) for r, h in zip(refs, hyps) if not r)
    total = sum(len(r.split()) if which == "wer" else len(r) for r, _ in kept)
    fn = jiwer.wer if which == "wer" else jiwer.cer
    rate = fn([r for r, _ in kept], [h for _, h in kept])
    return float((rate * total + errors) / total)


class SpeechRecognitionTask(Task):
    """A transcript per clip (see the module docstring). ``label_names`` are the characters of
    the training transcripts (a CTC head's vocabulary, saved with the model)."""

    kind = "speech_recognition"
    features = "backbone"
    budget_unit = "examples"
    #: label efficiency budgets count transcribed clips (never "labels": a transcript's
    #: characters are not labels)
    budget_noun = "transcribed utterances"
    report = "transcripts"
    single_label = False
    targets_in_batch = True
    scores_baseline = True
    export_output = "text"
    #: ``Predictor.predict(..., num_beams=4)``: beam search instead of greedy decoding (Whisper);
    #: ``word_timestamps=True``: each prediction is ``{"text", "words"}``, every word with its
    #: ``start`` and ``end`` in seconds (CTC: the frames its characters were read from; Whisper:
    #: its alignment heads' cross-attention)
    predict_options = {"num_beams": int, "word_timestamps": bool}

    def __init__(self, name: str = TASK):
        self.name = name
        self.characters: list[str] = []
        #: beam size of generation (1: greedy, what validation uses)
        self.num_beams = 1
        #: the most tokens generated per clip: from the longest training transcript (a token
        #: per two characters and some slack), so a model that repeats itself stops early
        self.max_new_tokens = MAX_NEW_TOKENS
        #: predictions carry word timestamps (the ``word_timestamps`` prediction option)
        self.word_timestamps = False

    # -- data --------------------------------------------------------------------------------
    def read_targets(self, values, rows, source, split, options=None):
        out, empty = [], []
        for v, row in zip(values, rows):
            text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
            if not text:
                empty.append(int(row))
            out.append(" ".join(text.split()))
        if empty:
            raise DataError(f"{source}: {len(empty)} clip(s) in {split} have an empty transcript, "
                            f"data rows {rows_text(np.asarray(empty))}; every clip needs its text")
        return out

    def label_names(self, targets, source, label_column):
        chars = sorted({c for t in targets if t for c in t})
        if not chars:
            raise DataError(f"{source}: the transcripts in column {label_column!r} are empty")
        return chars

    def encode_targets(self, targets, label_names, rows, source, split):
        return texts_to_codes(list(targets))

    def stratify(self, encoded):
        return None

    def class_counts(self, encoded, label_names):
        return None

    def imbalanced(self, encoded, label_names):
        return False

    def fit(self, train_targets, label_names):
        self.characters = list(label_names)
        codes = None if train_targets is None else np.asarray(train_targets)
        if codes is not None and codes.ndim == 2 and len(codes):
            longest = int((codes != IGNORE).sum(1).max())
            self.max_new_tokens = min(MAX_NEW_TOKENS, longest // 2 + 16)

    def state(self):
        return {"characters": "".join(self.characters), "max_new_tokens": self.max_new_tokens}

    def load_state(self, state, where):
        chars = state.get("characters")
        if not isinstance(chars, str) or not chars:
            raise ModelLoadError(f"{where}: task_state.characters must be a non-empty string (the "
                                 "training transcripts' characters); re-export the model")
        self.characters = list(chars)
        limit = state.get("max_new_tokens", MAX_NEW_TOKENS)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ModelLoadError(f"{where}: task_state.max_new_tokens must be a positive integer; "
                                 "re-export the model")
        self.max_new_tokens = limit

    # -- model -------------------------------------------------------------------------------
    def num_outputs(self, label_names):
        return len(label_names) + 1  # CTC: the characters and a blank

    def make_head(self, backbone, num_outputs, params):
        if getattr(backbone, "decodes_text", False):
            backbone.train_only(str(params.get("strategy", "full")),
                                int(params.get("top_encoder_layers") or 2))
            head = Seq2SeqHead()
        else:
            if not self.characters:
                raise ModelLoadError(f"task {self.name!r}: a CTC head needs the training characters "
                                     "(fit the task on the training data first)")
            head = CTCHead(int(backbone.position_dim), self.characters, float(params.get("dropout", 0.1)))
        head.num_beams = self.num_beams
        head.max_new_tokens = self.max_new_tokens
        return head

    def set_predict_options(self, head, options):
        """Each call starts from the defaults (greedy, no timestamps): an option holds for the
        ``predict`` call that gives it."""
        super().set_predict_options(head, {"num_beams": 1, "word_timestamps": False, **options})
        self.word_timestamps = bool(head.word_timestamps)

    def scores_zero_shot(self, head):
        """Whisper's decoder transcribes before fine-tuning; a new CTC layer does not."""
        return isinstance(head, Seq2SeqHead)

    def predictions_frame(self, labels, predictions):
        """One row per clip: the transcript (``true``), the prediction (``pred``) and the
        clip's WER."""
        import pandas as pd

        refs = codes_to_texts(labels)
        hyps = [str(p) for p in predictions]
        return pd.DataFrame({"true": refs, "pred": hyps,
                             "wer": [word_error_rate([r], [h]) for r, h in zip(refs, hyps)]})

    def test_table(self, labels, predictions):
        """Test transcripts the report shows: the :data:`WORST_SHOWN` clips of highest WER
        and :data:`TYPICAL_SHOWN` typical ones (WER nearest the median clip's), each with its
        reference, the prediction and its WER (``row`` is the clip's 1-based position in the
        test split)."""
        import pandas as pd

        refs = codes_to_texts(labels)
        hyps = [str(p) for p in np.asarray(predictions, dtype=object).reshape(-1)]
        if not refs or len(refs) != len(hyps):
            return None
        wer = np.array([word_error_rate([r], [h]) for r, h in zip(refs, hyps)], dtype=np.float64)
        wer = np.nan_to_num(wer, nan=0.0)
        order = np.argsort(-wer, kind="stable")
        worst = [int(i) for i in order[:WORST_SHOWN]]
        rest = [int(i) for i in order[WORST_SHOWN:]]
        median = float(np.median(wer))
        typical = sorted(rest, key=lambda i: (abs(wer[i] - median), i))[:TYPICAL_SHOWN]
        rows = [("worst", i) for i in worst] + [("typical", i) for i in sorted(typical, key=lambda i: -wer[i])]
        table = pd.DataFrame({"shown": [k for k, _ in rows], "row": [i + 1 for _, i in rows],
                              "reference": [refs[i] for _, i in rows],
                              "prediction": [hyps[i] for _, i in rows],
                              "wer": [round(float(wer[i]), 4) for _, i in rows]})
        table.attrs["title"] = (f"Test transcripts: the {min(WORST_SHOWN, len(refs))} worst and "
                                f"{len(typical)} typical of {len(refs)} clips (WER per clip, "
                                "after Whisper's English normaliser)")
        return table

    def target_tensor(self, targets):
        return torch.as_tensor(np.asarray(targets), dtype=torch.long)

    def loss(self, logits, targets, params):
        """The model computed its own loss from ``batch["targets"]`` (a scalar)."""
        if logits.dim() != 0:
            raise ValueError(f"task {self.name!r}: the model returned outputs of shape "
                             f"{tuple(logits.shape)} in training, not its loss")
        return logits

    def predict(self, logits):
        texts = codes_to_texts(logits)
        return np.array(texts, dtype=object), None

    def decode(self, predictions, probabilities, label_names):
        """The transcripts; with word timestamps, ``{"text", "words"}`` per clip (the head wrote
        them as JSON)."""
        if self.word_timestamps:
            return [json.loads(str(t)) for t in predictions]
        return [str(t) for t in predictions]

    def subset_indices(self, targets, budget, seed):
        return random_subset(len(targets), budget, seed)

    # -- export (onnx / torchscript) ----------------------------------------------------------
    def export_head(self, head):
        """A CTC model exports per-frame ``log_probs`` (greedy CTC decoding is a few lines of
        numpy, in the card); a Whisper model exports its encoder (``encoder_hidden_states``), and
        :meth:`export_files` adds the decoder. The name of the output is set here."""
        if isinstance(head, CTCHead):
            self.export_output = "log_probs"
            return CTCLogProbs(head).eval()
        if isinstance(head, Seq2SeqHead):
            self.export_output = "encoder_hidden_states"
            return EncoderStates().eval()
        raise ModelLoadError(f"task {self.name!r}: the head {type(head).__name__} is neither a CTC "
                             "nor a sequence-to-sequence head; export 'native' instead")

    def export_shape(self, label_names):
        if self.export_output == "log_probs":
            return ["batch", "frames", f"{len(label_names) + 1} classes: the CTC blank, then 'labels'"]
        return ["batch", "frames", "the encoder's width"]

    def export_files(self, model, fmt, directory, sample_outputs):
        """Whisper: ``decoder.onnx`` (``input_ids`` and ``encoder_hidden_states`` -> ``logits``
        of every position; no cache: a transcript is short), checked with onnxruntime on the
        encoder's outputs, the tokenizer, and ``decoding`` (the prefix, end token, suppressed
        tokens and length limit greedy decoding used). CTC: nothing."""
        if not isinstance(model.head, Seq2SeqHead):
            return {}
        from automl_pt.export.formats import onnx_file
        from automl_pt.export.support import ExportFormatError

        backbone = model.backbone
        if fmt != "onnx":
            raise ExportFormatError(f"{fmt}: a Whisper transcriber exports as 'onnx' (encoder and "
                                    "decoder files), 'hf' (the transformers pipeline) or 'native'")
        gen = backbone._full.generation_config
        prefix = list(backbone.prefix)
        g = torch.Generator().manual_seed(0)
        vocab = int(backbone.decoder.embed_tokens.num_embeddings)
        batches = []
        for states, extra in zip(sample_outputs(), (1, 3)):
            ids = torch.randint(0, vocab, (len(states), len(prefix) + extra), generator=g)
            ids[:, :len(prefix)] = torch.tensor(prefix)
            batches.append({"input_ids": ids, "encoder_hidden_states": states.detach()})
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "encoder_hidden_states": {0: "batch", 1: "frames"}}
        worst = onnx_file(DecoderLogits(backbone).eval(), batches, list(axes), "logits", axes,
                          directory / "decoder.onnx", f"the decoder of {backbone.name!r}")
        backbone.tokenizer.save_pretrained(str(directory))
        out: dict[str, Any] = {
            "files": {"decoder": "decoder.onnx", "tokenizer": "tokenizer files (transformers)"},
            "decoder": {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "tokens"]},
                                   {"name": "encoder_hidden_states", "dtype": "float32",
                                    "shape": ["batch", "frames", int(backbone.feature_dim)]}],
                        "outputs": [{"name": "logits", "shape": ["batch", "tokens", vocab]}]},
            "decoding": {"prefix": prefix, "eos": int(backbone.eot),
                         "suppress_tokens": [int(t) for t in (gen.suppress_tokens or [])],
                         "begin_suppress_tokens": [int(t) for t in (gen.begin_suppress_tokens or [])],
                         "max_new_tokens": backbone.generation_limit(self.max_new_tokens)}}
        if worst is not None:
            out["decoder"]["max_abs_difference"] = worst
        return out


def timed_json(text: str, words: list[dict]) -> str:
    """A transcript with its word timestamps as the head returns it (JSON, ASCII: the code
    points travel as the transcripts do; :meth:`SpeechRecognitionTask.decode` reads it)."""
    return json.dumps({"text": text, "words": words})


def ctc_words(chars: list[list], seconds: float) -> list[dict]:
    """Words of a greedy CTC path (``[character, first frame, last frame]`` per emitted
    character; ``seconds`` per frame): each word from its first character's first frame to its
    last character's last frame."""
    words: list[dict] = []
    current: list[list] = []
    for item in [*chars, [" ", 0, 0]]:
        if not item[0].isspace():
            current.append(item)
            continue
        if current:
            words.append({"word": "".join(c for c, _, _ in current),
                          "start": round(current[0][1] * seconds, 2),
                          "end": round((current[-1][2] + 1) * seconds, 2)})
        current = []
    return words


def _padded_codes(texts: list[str], device: Any) -> Any:
    return torch.as_tensor(texts_to_codes(texts), dtype=torch.float32, device=device).masked_fill_(
        torch.as_tensor(texts_to_codes(texts) == IGNORE, device=device), float("nan"))


def _targets_as_texts(targets: Any) -> list[str]:
    return codes_to_texts(targets.detach().float().cpu())


class Seq2SeqHead(nn.Module):
    """No weights of its own: the backbone's decoder transcribes. ``head(backbone, batch)``:
    with ``batch["targets"]`` (training), the decoder's token cross-entropy under teacher
    forcing; without, the generated transcripts as code points ``(batch, chars)`` (NaN-padded)."""

    features = "backbone"

    def __init__(self):
        super().__init__()
        self.num_beams = 1
        self.max_new_tokens = MAX_NEW_TOKENS
        self.word_timestamps = False

    def forward(self, backbone: Any, batch: dict) -> Any:
        if "targets" in batch:
            return backbone.transcript_loss(batch, _targets_as_texts(batch["targets"]))
        texts = backbone.transcribe(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                    word_timestamps=self.word_timestamps)
        if self.word_timestamps:
            texts = [timed_json(text, words) for text, words in texts]
        return _padded_codes(texts, batch["length"].device)


class CTCHead(nn.Module):
    """A linear layer per encoder frame over ``characters`` + blank (index 0); CTC loss in
    training, greedy CTC decoding otherwise."""

    features = "backbone"

    def __init__(self, dim: int, characters: list[str], dropout: float = 0.1):
        super().__init__()
        self.characters = list(characters)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, len(characters) + 1)
        lookup = torch.zeros(max(ord(c) for c in characters) + 2, dtype=torch.long)
        for i, c in enumerate(characters):
            lookup[ord(c)] = i + 1
        self.register_buffer("lookup", lookup, persistent=False)  # code point -> class (0: unknown)
        self.register_buffer("codes", torch.tensor([0] + [ord(c) for c in characters], dtype=torch.long),
                             persistent=False)
        self.num_beams = 1
        self.word_timestamps = False

    def forward(self, backbone: Any, batch: dict) -> Any:
        feats, mask = backbone.encode_positions(batch)
        logits = self.linear(self.dropout(feats)).float()
        lengths = mask.sum(1)
        if "targets" in batch:
            return self.loss(logits, lengths, batch["targets"])
        best = logits.argmax(-1)
        texts = []
        seconds = 0.0
        if self.word_timestamps:
            if backbone.samples_per_frame is None:
                raise BackboneError(f"backbone {backbone.name!r}: its frames have no fixed duration, "
                                    "so a CTC head cannot time words on it")
            seconds = backbone.samples_per_frame / backbone.sample_rate
        for row, n in zip(best.tolist(), lengths.tolist()):
            chars: list[list] = []   # [character, first frame, last frame] per emitted character
            prev = 0
            for frame, k in enumerate(row[:n]):
                if k != 0 and k != prev:
                    chars.append([chr(int(self.codes[k])), frame, frame])
                elif k != 0:
                    chars[-1][2] = frame   # the character goes on
                prev = k
            text = "".join(c for c, _, _ in chars)
            texts.append(timed_json(text, ctc_words(chars, seconds)) if self.word_timestamps else text)
        return _padded_codes(texts, logits.device)

    def loss(self, logits: Any, lengths: Any, targets: Any) -> Any:
        real = targets >= 0
        codes = targets.clamp(min=0, max=len(self.lookup) - 1)
        labels = self.lookup[codes].masked_fill(~real, 0)
        # characters never seen in train have no class: left out of the target
        keep = real & (labels > 0)
        target_lengths = keep.sum(1)
        flat = labels[keep]
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # (T, B, C)
        return nn.functional.ctc_loss(log_probs, flat, lengths, target_lengths, blank=0,
                                      reduction="mean", zero_infinity=True)


class CTCLogProbs(nn.Module):
    """A :class:`CTCHead` as exported: per-frame log-probabilities ``(batch, frames, 1 +
    characters)`` over every frame of the batch, NaN on the frames after a clip's end (the
    exported file decodes nothing: greedy CTC decoding is the card's numpy). Library formats
    (``hf``) read its ``linear`` layer and ``characters`` as they would the head's."""

    features = "backbone"

    def __init__(self, head: CTCHead):
        super().__init__()
        self.linear = head.linear
        self.characters = list(head.characters)

    def forward(self, backbone: Any, batch: dict) -> Any:
        hidden, valid = backbone.hidden(batch)
        log_probs = self.linear(hidden).float().log_softmax(-1)
        frames = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < valid[:, None]
        return log_probs.masked_fill(~frames[..., None], float("nan"))


class EncoderStates(nn.Module):
    """A :class:`Seq2SeqHead` as exported: the encoder's states ``(batch, frames, width)``,
    which the exported decoder reads."""

    features = "backbone"

    def forward(self, backbone: Any, batch: dict) -> Any:
        return backbone.hidden(batch)[0]


class DecoderLogits(nn.Module):
    """The Whisper decoder as exported: token ids and the encoder's states -> the logits of
    every position (the output projection is the token embedding, as in Whisper)."""

    def __init__(self, backbone: Any):
        super().__init__()
        self.decoder = backbone.decoder

    def forward(self, input_ids: Any, encoder_hidden_states: Any) -> Any:
        states = self.decoder(input_ids=input_ids, encoder_hidden_states=encoder_hidden_states,
                              use_cache=False).last_hidden_state
        return nn.functional.linear(states, self.decoder.embed_tokens.weight).float()
