"""``automl_pt.load(dir).predict(...)`` on every kind of input of every modality: the answers do
not depend on how the inputs were given or on the batch size; file inputs are named in the output
table; long inputs show a progress bar on stderr; bad inputs fail with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import automl_pt
from automl_pt.cli import main
from automl_pt.errors import DataError
from tests.support.exported import audio_best, cached, image_best, text_best


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp() / "exported-models"
    return {"text": cached(base, "text", text_best), "image": cached(base, "image", image_best),
            "audio": cached(base, "audio", audio_best)}


def data_dir(best: Path) -> Path:
    return best.parent.parent / "data"


def same(a, b) -> None:
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_text_inputs(models, tmp_path):
    model = automl_pt.load(models["text"])
    test = pd.read_csv(data_dir(models["text"]) / "test.csv")
    texts = test["text"].tolist()
    reference = model.predict(texts)
    assert len(reference) == len(texts) and reference.inputs is None
    np.testing.assert_allclose(reference.probabilities.sum(axis=1), 1.0, rtol=1e-5)

    same(model.predict(test), reference)                                   # DataFrame
    same(model.predict(test["text"]), reference)                           # Series
    same(model.predict(tuple(texts)), reference)                           # tuple
    same(model.predict(data_dir(models["text"]) / "test.csv"), reference)  # table file (Path)
    test.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    test.to_parquet(tmp_path / "t.parquet")
    same(model.predict(str(tmp_path / "t.jsonl")), reference)              # table file (str)
    same(model.predict(tmp_path / "t.parquet"), reference)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n\n")             # one text per line
    same(model.predict(tmp_path / "t.txt"), reference)
    one = model.predict(texts[3])                                          # a single string
    assert one.labels == [reference.labels[3]]
    np.testing.assert_allclose(one.probabilities[0], reference.probabilities[3], atol=1e-6)
    same(model.predict(np.array(texts)), reference)                        # numpy array of str
    for batch_size in (1, 5):                                              # batching changes nothing
        same(model.predict(texts, batch_size=batch_size), reference)
    assert len(model.predict([])) == 0

    with pytest.raises(DataError, match=r"no column 'text' \(columns: sentence\)"):
        model.predict(pd.DataFrame({"sentence": texts}))
    with pytest.raises(DataError, match="a folder is not a text input"):
        model.predict(tmp_path)


def test_image_inputs(models, tmp_path):
    from PIL import Image

    model = automl_pt.load(models["image"])
    folder = data_dir(models["image"]) / "test_images"
    reference = model.predict(folder)                         # a folder: every image under it
    files = sorted(str(p) for p in folder.rglob("*.png"))
    assert reference.inputs == files
    frame = reference.to_frame()
    assert list(frame.columns[:3]) == ["input", "label", "confidence"]
    assert frame["input"].tolist() == files

    same(model.predict(files), reference)                     # list of paths
    import shutil

    mixed = shutil.copytree(folder, tmp_path / "mixed")       # other files in a folder are skipped
    (mixed / "notes.txt").write_text("not an image")
    (mixed / ".hidden.png").write_bytes(b"")
    assert model.predict(mixed).labels == reference.labels
    table = model.predict(data_dir(models["image"]) / "test.csv")   # relative paths in a table
    assert sorted(table.inputs) == sorted(str(Path(f)) for f in files)
    by_file = dict(zip(table.inputs, table.labels))
    assert [by_file[f] for f in files] == reference.labels
    single = model.predict(files[0])                          # one file
    assert single.labels == reference.labels[:1] and single.inputs == files[:1]

    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    same(model.predict(arrays), reference)                    # numpy HxWxC arrays
    same(model.predict(np.stack(arrays), batch_size=2), reference)   # one NxHxWxC batch
    same(model.predict([Image.open(f) for f in files]), reference)   # PIL images
    same(model.predict([Path(f).read_bytes() for f in files]), reference)   # encoded bytes
    one = model.predict(arrays[0])                            # one array is one image
    assert one.labels == reference.labels[:1]

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files in this folder"):
        model.predict(tmp_path / "empty")
    with pytest.raises(DataError, match="missing.png: image file not found"):
        model.predict(str(tmp_path / "missing.png"))


def test_audio_inputs(models, tmp_path):
    import soundfile as sf

    from automl_pt_speech.audio import read_audio

    model = automl_pt.load(models["audio"])
    folder = data_dir(models["audio"]) / "test_clips"
    reference = model.predict(folder)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    assert reference.inputs == files and len(reference) == len(files)
    same(model.predict(files), reference)
    table = model.predict(data_dir(models["audio"]) / "test.csv")
    assert dict(zip(table.inputs, table.labels)) == dict(zip(files, reference.labels))
    assert model.predict(files[0]).labels == reference.labels[:1]

    pairs = [sf.read(f, dtype="float32") for f in files]     # (waveform, its own rate)
    same(model.predict([(w, int(r)) for w, r in pairs]), reference)
    waves = [read_audio(f, 16000) for f in files]             # waveforms at the model's rate
    same(model.predict(waves), reference)
    one = model.predict(waves[0])                             # a 1-D array is one clip
    assert one.labels == reference.labels[:1]
    short = min(len(w) for w in waves)
    batch = np.stack([w[:short] for w in waves])              # a 2-D array: one clip per row
    same(model.predict(batch), model.predict([w[:short] for w in waves]))


def test_progress_bar_on_long_inputs_only(models, capfd):
    model = automl_pt.load(models["text"])
    texts = pd.read_csv(data_dir(models["text"]) / "test.csv")["text"].tolist()
    model.predict(texts, batch_size=4)                       # 12 texts: 3 batches, no bar
    assert "predicting" not in capfd.readouterr().err
    model.predict(texts * 2, batch_size=4)                   # 24 texts: 6 batches
    captured = capfd.readouterr()
    assert "predicting" in captured.err and "24/24" in captured.err and captured.out == ""
    model.predict(texts * 2, batch_size=4, progress=False)
    assert "predicting" not in capfd.readouterr().err


def test_cli_predict_on_a_folder(models, tmp_path):
    out = tmp_path / "pred.csv"
    folder = data_dir(models["image"]) / "test_images"
    assert main(["predict", str(models["image"]), str(folder), "-o", str(out), "--batch-size", "2"]) == 0
    frame = pd.read_csv(out)
    expected = automl_pt.load(models["image"]).predict(folder)
    assert frame["input"].tolist() == expected.inputs
    assert frame["label"].tolist() == expected.labels
    assert main(["predict", str(models["image"]), str(tmp_path / "nowhere")]) == 2   # bad input: a missing file
