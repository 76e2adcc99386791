"""The class-per-folder data reader: ``root/<class>/<image>`` (sub-folders of a class count too).

Every file becomes a row ``(path, class)``; an empty class folder becomes a row whose input is
the folder itself, so the core's bad-input check (:func:`automl_pt_vision.preprocess.check_image`)
lists it with the unreadable and non-image files, or skips it with ``data.on_bad_file = "skip"``.
Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from automl_pt.errors import DataError

#: suffixes of the image files decoding accepts (kept here, not in preprocess.py, so that building
#: the registry, which asks this reader's ``accepts``, imports no torch)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                            ".ppm", ".pgm", ".pbm", ".jfif"})
SCAN_LIMIT = 2000  # files looked at to decide whether a folder is an image tree


def _visible_files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def accepts(path: Path) -> bool:
    """A folder whose class sub-folders hold at least one file with an image suffix."""
    if not path.is_dir():
        return False
    seen = 0
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if Path(root) == path:
            continue
        for f in files:
            if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                return True
            seen += 1
        if seen > SCAN_LIMIT:
            break
    return False


def read_class_folders(path: Path, options: dict):
    """A DataFrame with ``options['input_column']`` (absolute paths) and
    ``options['label_column']`` (the class folder names), classes in sorted order.
    Raises :class:`DataError` when there are no class folders or files lie outside them."""
    import pandas as pd

    input_col = options.get("input_column") or "image"
    label_col = options.get("label_column") or "label"
    root = path.resolve()
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{path}: no class folders (expected {path}/<class name>/<image files>)")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if loose:
        shown = ", ".join(loose[:10]) + (f" and {len(loose) - 10} more" if len(loose) > 10 else "")
        raise DataError(f"{path}: {len(loose)} file(s) outside the class folders ({shown}); move "
                        "them into a folder named after their class, or remove them")
    inputs, labels = [], []
    for folder in classes:
        files = _visible_files(folder)
        for f in files or [folder]:   # an empty class folder is reported as a bad input
            inputs.append(str(f))
            labels.append(folder.name)
    return pd.DataFrame({input_col: inputs, label_col: labels})
