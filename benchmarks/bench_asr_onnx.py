"""ONNX export of a fine-tuned Whisper transcriber: does the exported pair (encoder
``model.onnx`` + ``decoder.onnx``, decoded greedily by the model card's own snippet with
onnxruntime) transcribe as ``automl_pt.load(best).predict`` does, and how fast, in one run?

A short speech-recognition study fine-tunes the shipped Whisper tiny.en on espeak-ng accented
sentences (``studies/make_accent.py``'s generator, small), exports ``onnx``, then transcribes
the test clips twice: ``Predictor.predict`` (PyTorch, batches sorted by length, generation with
a cache) and the card's snippet (the clips resampled with soxr and padded to the longest, as
``predict`` does; onnxruntime, a decoder pass over the whole prefix per token, no cache). Prints
the export time, the test WER of both, how many transcripts are identical, and clips/s of both.

Usage::

    python benchmarks/bench_asr_onnx.py [--train 24] [--test 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "plugins" / "automl-pt-speech"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=24)
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import pandas as pd

    import automl_pt
    from automl_pt.export.formats import export_model
    from automl_pt_speech.accent import make_accent_set
    from automl_pt_speech.asr import word_error_rate

    work = Path(tempfile.mkdtemp(prefix="bench-asr-onnx-"))
    tables = make_accent_set(work / "data", n_train=args.train, n_validation=4, n_test=args.test,
                             seed=3, voices=("de",), words=(4, 8))
    study = automl_pt.Study.from_config({
        "study": {"name": "bench-asr-onnx", "trials": 1, "seed": 0, "metric": "wer"},
        "task": {"type": "speech-recognition"},
        "data": {"train": str(tables["train"]), "validation": str(tables["validation"]),
                 "test": str(tables["test"]), "audio_column": "audio", "text_column": "text"},
        "search": {"backbones": ["whisper-tiny-en"], "pruner": "none",
                   "space": {"strategy": ["full"], "learning_rate": [1e-4], "epochs": [2],
                             "batch_size": [8], "warmup_ratio": [0.0], "min_steps": [0],
                             "patience": [0], "augmentation_strength": [0.0]}},
        "resources": {"workers": "inline"},
        "storage": {"dir": str(work / "run")},
    })
    best = study.run(progress=False).best_model_dir
    predictor = automl_pt.load(best)

    t0 = time.perf_counter()
    out = export_model(best, "onnx", work / "onnx", predictor=predictor)
    export_s = time.perf_counter() - t0
    config = json.loads((out / "automl_pt_export.json").read_text())

    test = pd.read_csv(tables["test"])
    clips = [str(Path(tables["test"]).parent / a) for a in test["audio"]]
    refs = list(test["text"])

    t0 = time.perf_counter()
    native = predictor.predict(clips).labels
    native_s = time.perf_counter() - t0

    card = (out / "README.md").read_text()
    start = card.index("```python\n", card.index("## How to load")) + 10
    snippet = card[start:card.index("```\n", start)].replace('["clip.wav"]', repr(clips))
    namespace: dict = {}
    t0 = time.perf_counter()
    exec(compile(snippet, str(out / "README.md"), "exec"), namespace)
    onnx_s = time.perf_counter() - t0
    exported = namespace["texts"]

    result = {
        "clips": len(clips), "export_s": round(export_s, 1),
        "encoder_mb": round((out / "model.onnx").stat().st_size / 2**20, 1),
        "decoder_mb": round((out / "decoder.onnx").stat().st_size / 2**20, 1),
        "encoder_max_abs_difference": config["max_abs_difference"],
        "decoder_max_abs_difference": config["decoder"]["max_abs_difference"],
        "wer_native": round(word_error_rate(refs, native), 4),
        "wer_onnx_card": round(word_error_rate(refs, exported), 4),
        "identical_transcripts": sum(a == b for a, b in zip(native, exported)),
        "native_clips_per_s": round(len(clips) / native_s, 2),
        "onnx_card_clips_per_s": round(len(clips) / onnx_s, 2),
    }
    for k, v in result.items():
        print(f"{k:28s} {v}")
    differing = [(n, e) for n, e in zip(native, exported) if n != e]
    for n, e in differing[:3]:
        print(f"  native: {n!r}\n  onnx:   {e!r}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
