"""``predict`` checks its inputs like training does, for every modality and every way of giving
them: missing, empty or non-text values, path-looking strings given to a text model, bad image and
audio files fail with one clear line naming the offending rows or items (exit 2 on the command
line); a table with no rows warns and predicts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import automl_pt
from automl_pt.errors import DataError
from tests.support.exported import audio_best, cached, image_best, text_best


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp() / "exported-models"   # shared with test_predict_modalities
    return {"text": cached(base, "text", text_best), "image": cached(base, "image", image_best),
            "audio": cached(base, "audio", audio_best)}


@pytest.fixture(scope="module")
def loaded(models) -> dict[str, automl_pt.Predictor]:
    return {name: automl_pt.load(path) for name, path in models.items()}


def data_dir(best: Path) -> Path:
    return best.parent.parent / "data"


def image_files(models) -> list[str]:
    return sorted(str(p) for p in (data_dir(models["image"]) / "test_images").rglob("*.png"))


def audio_files(models) -> list[str]:
    return sorted(str(p) for p in (data_dir(models["audio"]) / "test_clips").rglob("*") if p.is_file())


def error(call, *args, **kwargs) -> str:
    """The message of the DataError ``call`` raises; it is one line."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def silent_wav(path: Path) -> Path:
    import soundfile as sf

    sf.write(str(path), np.zeros(8000, dtype=np.float32), 16000)
    return path


# -- text ---------------------------------------------------------------------------------------
def test_text_items_must_be_non_empty_texts(loaded):
    model = loaded["text"]
    message = error(model.predict, ["bread soup", None, "", "  ", float("nan"), 5, 2.5, "jury"])
    assert message.startswith("6 bad input(s): ")
    for part in ("inputs[1]: None is not a text input", "inputs[2]: empty text", "inputs[3]: empty text",
                 "inputs[4]: NaN is not a text input", "inputs[5]: 5 (int) is not a text input",
                 "inputs[6]: 2.5 (float) is not a text input"):
        assert part in message
    assert "inputs[0]" not in message and "inputs[7]" not in message
    assert "inputs[1]: NaN is not a text input" in error(model.predict, pd.Series(["soup", np.nan]))
    assert "inputs[0]: None is not a text input" in error(model.predict, np.array([None, "soup"], dtype=object))
    assert "inputs[1]: 3 (int) is not a text input" in error(model.predict, ("soup", 3))
    assert "inputs[0]: bytes is not a text input" in error(model.predict, [b"bytes are not text"])
    assert error(model.predict, "  ") == "empty text"
    assert "None is not a text input" in error(model.predict, None)
    assert "7 (int) is not a text input" in error(model.predict, 7)


def test_text_tables_are_checked_like_training(loaded, tmp_path):
    model = loaded["text"]
    frame = pd.DataFrame({"text": ["bread soup", None, " ", "jury trial"], "label": list("abcd")})
    message = error(model.predict, frame)
    assert message == "<DataFrame>: 2 empty value(s) in column 'text' (input), data rows 2, 3"
    frame.to_csv(tmp_path / "t.csv", index=False)                 # the blank cell reads as NaN
    assert error(model.predict, tmp_path / "t.csv") == (
        f"{tmp_path / 't.csv'}: 2 empty value(s) in column 'text' (input), data rows 2, 3")


def test_text_model_given_file_names(loaded, models, tmp_path):
    model = loaded["text"]
    image, clip = image_files(models)[0], audio_files(models)[0]
    assert error(model.predict, image).startswith(f"{image}: is an image file; this model takes text")
    assert "is an image file; this model takes text" in error(model.predict, Path(image))
    assert f"inputs[1]: {image} is an image file; this model takes text" in error(
        model.predict, ["soup", image])
    assert f"{clip}: is an audio file; this model takes text" in error(model.predict, clip)
    missing = tmp_path / "nowhere.csv"
    assert error(model.predict, str(missing)).startswith(f"{missing}: file not found")
    assert error(model.predict, "nowhere.txt").startswith("nowhere.txt: file not found")
    (tmp_path / "notes.md").write_text("bread soup\n")
    assert "is not a table" in error(model.predict, tmp_path / "notes.md")


def test_text_strings_that_only_look_odd_are_still_texts(loaded):
    model = loaded["text"]
    long_text = "bread soup cheese " * 40                         # longer than a file name may be
    reference = model.predict([long_text, "see the numbers in results.csv"])
    single = model.predict(long_text)
    assert single.labels == reference.labels[:1]
    np.testing.assert_allclose(single.probabilities[0], reference.probabilities[0], atol=1e-6)
    assert len(model.predict(["nowhere.csv"])) == 1               # in a list, a string is a text


def test_header_only_tables_warn_and_predict_nothing(loaded, tmp_path):
    for name, column in (("text", "text"), ("image", "image"), ("audio", "audio")):
        path = tmp_path / f"{name}.csv"
        path.write_text(f"{column},label\n")
        with pytest.warns(UserWarning, match=f"{path}: no data rows; nothing to predict") as caught:
            prediction = loaded[name].predict(path)
        assert caught[0].filename == __file__                     # attributed to the caller
        assert len(prediction) == 0 and prediction.to_frame().empty
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.warns(UserWarning, match="blank.txt: no texts; nothing to predict"):
        assert len(loaded["text"].predict(tmp_path / "blank.txt")) == 0
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert error(loaded["text"].predict, tmp_path / "latin1.txt").startswith(
        f"{tmp_path / 'latin1.txt'}: not a UTF-8 text file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(loaded["text"].predict([])) == 0               # an empty list is not a mistake


# -- images -------------------------------------------------------------------------------------
def test_bad_image_files_get_training_reasons(loaded, models, tmp_path):
    model = loaded["image"]
    good = image_files(models)[0]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "zero.png").write_bytes(b"")
    message = error(model.predict, [good, str(tmp_path / "gone.png"), tmp_path / "bad.png",
                                    str(tmp_path / "zero.png"), None, 3])
    assert message.startswith("5 bad input(s): ")
    for part in (f"inputs[1]: {tmp_path / 'gone.png'}: file not found",
                 f"inputs[2]: {tmp_path / 'bad.png'}: not an image (unknown format)",
                 f"inputs[3]: {tmp_path / 'zero.png'}: empty file",
                 "inputs[4]: None is not an image input", "inputs[5]: 3 (int) is not an image input"):
        assert part in message
    assert error(model.predict, tmp_path / "bad.png") == (
        f"{tmp_path / 'bad.png'}: not an image (unknown format)")


def test_image_folders_and_tables_are_checked(loaded, models, tmp_path):
    import shutil

    model = loaded["image"]
    folder = shutil.copytree(data_dir(models["image"]) / "test_images", tmp_path / "images")
    broken = sorted(p for p in folder.iterdir() if p.is_dir())[0] / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    message = error(model.predict, folder)
    assert message == f"{folder}: 1 bad image file(s): {broken}: not an image (unknown format)"
    rel = [str(p.relative_to(tmp_path)) for p in sorted(folder.rglob("*.png")) if p != broken]
    table = tmp_path / "t.csv"
    pd.DataFrame({"image": [rel[0], None, "images/none.png"]}).to_csv(table, index=False)
    assert error(model.predict, table) == (
        f"{table}: 1 empty value(s) in column 'image' (input), data rows 2")
    pd.DataFrame({"image": [rel[0], "images/none.png"]}).to_csv(table, index=False)
    assert error(model.predict, table) == (
        f"{table}: 1 bad image file(s): row 2: {tmp_path / 'images' / 'none.png'}: file not found")
    assert "data rows 1" in error(model.predict, pd.DataFrame({"image": [float("nan")]}))


# -- audio --------------------------------------------------------------------------------------
def test_bad_audio_files_get_training_reasons(loaded, models, tmp_path):
    model = loaded["audio"]
    good = audio_files(models)[0]
    (tmp_path / "text.wav").write_text("not audio")
    message = error(model.predict, [good, silent_wav(tmp_path / "quiet.wav"), tmp_path / "text.wav",
                                    str(tmp_path / "gone.wav"), ""])
    assert message.startswith("4 bad input(s): ")
    for part in (f"inputs[1]: {tmp_path / 'quiet.wav'}: silent clip",
                 f"inputs[2]: {tmp_path / 'text.wav'}: cannot decode as audio",
                 f"inputs[3]: {tmp_path / 'gone.wav'}: file not found",
                 "inputs[4]: empty path"):
        assert part in message
    assert error(model.predict, tmp_path / "quiet.wav").startswith(f"{tmp_path / 'quiet.wav'}: silent clip")


def test_audio_folders_and_tables_are_checked(loaded, models, tmp_path):
    import shutil

    model = loaded["audio"]
    folder = shutil.copytree(data_dir(models["audio"]) / "test_clips", tmp_path / "clips")
    label = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    silent_wav(label / "zz-quiet.wav")
    assert error(model.predict, folder).startswith(
        f"{folder}: 1 bad audio file(s): {label / 'zz-quiet.wav'}: silent clip")
    table = tmp_path / "t.csv"
    pd.DataFrame({"audio": ["clips/" + label.name + "/zz-quiet.wav", ""]}).to_csv(table, index=False)
    assert error(model.predict, table) == (
        f"{table}: 1 empty value(s) in column 'audio' (input), data rows 2")
    assert error(model.predict, tmp_path / "nowhere.csv") == f"{tmp_path / 'nowhere.csv'}: table file not found"


# -- the command line ---------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl_pt.cli", "predict", *map(str, args)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def test_cli_rejects_bad_inputs_with_one_line(models, tmp_path):
    image = image_files(models)[0]
    assert "is an image file; this model takes text" in one_error_line(cli(models["text"], image))
    assert "nowhere.csv: file not found" in one_error_line(cli(models["text"], tmp_path / "nowhere.csv"))
    pd.DataFrame({"text": ["bread soup", ""]}).to_csv(tmp_path / "t.csv", index=False)
    assert "empty value(s) in column 'text' (input), data rows 2" in one_error_line(
        cli(models["text"], tmp_path / "t.csv"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    (tmp_path / "images" / "b.png").write_bytes(b"junk")
    line = one_error_line(cli(models["image"], tmp_path / "images"))
    assert "2 bad image file(s)" in line and "a.png: empty file" in line
    assert "silent clip" in one_error_line(cli(models["audio"], silent_wav(tmp_path / "q.wav")))


def test_cli_header_only_table_warns(models, tmp_path):
    (tmp_path / "h.csv").write_text("text,label\n")
    proc = cli(models["text"], tmp_path / "h.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"warning: {tmp_path / 'h.csv'}: no data rows; nothing to predict"
    assert proc.stdout.strip() == "label,confidence,p_food,p_law,p_space"
