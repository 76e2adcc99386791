"""Object-detection data readers: COCO JSON and YOLO folders (no torch here).

Both give the core a table with one row per image: the image path (``[data] image_column``,
default ``image``) and its boxes (``[data] label_column``, default ``label``), a list of
``[x1, y1, x2, y2, category]`` with coordinates relative to the image's width and height (0..1);
an image without boxes has an empty list. The same table can be written by hand (JSONL /
Parquet with a list per row) for :class:`automl_pt_vision.detection.DetectionTask`.

Problems name the file and the annotation: a box outside its image, a box of zero area, an
unknown category id, an annotation of an image the file does not list. With
``[data] on_bad_file = "skip"`` such annotations are left out and counted in a
:class:`~automl_pt.errors.DataWarning` instead. Missing or unreadable image files are the core's
bad-file check (the task's ``check_input``), reported or skipped the same way.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from automl_pt.errors import DataError, DataWarning

from .folders import IMAGE_SUFFIXES

#: how far (pixels) a COCO box may reach past its image before it is an error (rounding)
EDGE_TOLERANCE = 1.0
LISTED = 10


def is_coco(path: Path) -> bool:
    """A ``.json`` file holding an object with ``images`` and ``annotations`` lists."""
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    try:
        with path.open("r", encoding="utf-8") as f:
            if not f.read(64).lstrip().startswith("{"):
                return False
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("images"), list) \
        and isinstance(doc.get("annotations"), list)


def _report(path: Path, problems: list[str], options: dict, what: str) -> None:
    if not problems:
        return
    if options.get("on_bad_file") == "skip":
        warnings.warn(f"{path}: skipped {len(problems)} bad {what}(s) (data.on_bad_file = \"skip\"); "
                      f"first: {problems[0]}", DataWarning, stacklevel=3)
        return
    listed = "\n".join(f"  {p}" for p in problems[:LISTED])
    more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
    raise DataError(f"{path}: {len(problems)} bad {what}(s):\n{listed}{more}\n"
                    "Fix them, or set data.on_bad_file = \"skip\" to leave them out.")


def read_coco(path: Path, options: dict):
    """A COCO detection file as the detection table (see the module docstring). ``file_name``
    is relative to the JSON file's folder; ``bbox`` is ``[x, y, width, height]`` in pixels of
    the image's ``width`` x ``height``; categories are named by ``categories[].name``."""
    import pandas as pd

    input_col = options.get("input_column") or "image"
    label_col = options.get("label_column") or "label"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    base = path.resolve().parent
    categories = {}
    for i, c in enumerate(doc.get("categories") or []):
        if not isinstance(c, dict) or "id" not in c:
            raise DataError(f"{path}: categories[{i}] has no 'id'")
        categories[c["id"]] = str(c.get("name", c["id"])).strip()
    if not categories:
        raise DataError(f"{path}: no 'categories' (a list of {{\"id\", \"name\"}})")
    images, order, problems = {}, [], []
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DataError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        w, h = im.get("width"), im.get("height")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (w, h)):
            raise DataError(f"{path}: images[{i}] (id {im['id']!r}, {im['file_name']}) needs a positive "
                            f"'width' and 'height', got {w!r} x {h!r}")
        if im["id"] in images:
            raise DataError(f"{path}: images[{i}]: image id {im['id']!r} is listed twice")
        images[im["id"]] = (str(base / str(im["file_name"])), float(w), float(h))
        order.append(im["id"])
    boxes: dict = {k: [] for k in images}
    for i, a in enumerate(doc["annotations"]):
        where = f"annotations[{i}] (id {a.get('id')!r}" if isinstance(a, dict) else f"annotations[{i}] ("
        if not isinstance(a, dict):
            problems.append(f"{where}): not an object")
            continue
        image = images.get(a.get("image_id"))
        if image is None:
            problems.append(f"{where}): image_id {a.get('image_id')!r} is not in 'images'")
            continue
        where += f", image {Path(image[0]).name})"
        if a.get("category_id") not in categories:
            problems.append(f"{where}: unknown category_id {a.get('category_id')!r} "
                            f"(categories: {', '.join(map(str, list(categories)[:20]))})")
            continue
        bbox = a.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            problems.append(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        _, w, h = image
        if bw <= 0 or bh <= 0:
            problems.append(f"{where}: zero-area box {bbox!r} (width and height must be > 0)")
            continue
        if x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + bw > w + EDGE_TOLERANCE \
                or y + bh > h + EDGE_TOLERANCE:
            problems.append(f"{where}: box {bbox!r} lies outside the {w:g} x {h:g} image")
            continue
        x1, y1 = max(0.0, x) / w, max(0.0, y) / h
        x2, y2 = min(w, x + bw) / w, min(h, y + bh) / h
        boxes[a["image_id"]].append([x1, y1, x2, y2, categories[a["category_id"]]])
    _report(path, problems, options, "annotation")
    return pd.DataFrame({input_col: [images[k][0] for k in order],
                         label_col: pd.Series([boxes[k] for k in order], dtype=object)})


# -- YOLO folders ---------------------------------------------------------------------------------
def is_yolo(path: Path) -> bool:
    """A folder with ``images/`` and ``labels/`` sub-folders."""
    return path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir()


def _yolo_names(path: Path) -> list[str] | None:
    for name in ("classes.txt", "../classes.txt"):
        f = path / name
        if f.is_file():
            return [line.strip() for line in f.read_text().splitlines() if line.strip()]
    for name in ("data.yaml", "../data.yaml"):
        f = path / name
        if f.is_file():
            import yaml

            names = (yaml.safe_load(f.read_text()) or {}).get("names")
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
    return None


def read_yolo(path: Path, options: dict):
    """A YOLO folder: ``images/<name>.<ext>`` and ``labels/<name>.txt`` with one ``class cx cy w
    h`` line per box (relative coordinates); class names from ``classes.txt`` or ``data.yaml``
    ``names`` (here or one folder up), else the class numbers. An image without a label file
    has no boxes."""
    import pandas as pd

    input_col = options.get("input_column") or "image"
    label_col = options.get("label_column") or "label"
    names = _yolo_names(path)
    files = sorted(p for p in (path / "images").rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no image files in {path / 'images'}")
    inputs, labels, problems = [], [], []
    for f in files:
        label_file = path / "labels" / f.relative_to(path / "images").with_suffix(".txt")
        rows = []
        if label_file.is_file():
            for n, line in enumerate(label_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                where = f"{label_file}: line {n}"
                parts = line.split()
                try:
                    cls, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:5])
                except (ValueError, IndexError):
                    problems.append(f"{where}: expected 'class cx cy w h', got {line.strip()!r}")
                    continue
                if names is not None and not 0 <= cls < len(names):
                    problems.append(f"{where}: unknown class {cls} ({len(names)} names)")
                    continue
                if bw <= 0 or bh <= 0:
                    problems.append(f"{where}: zero-area box {line.strip()!r}")
                    continue
                x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
                if min(x1, y1) < -0.01 or max(x2, y2) > 1.01:
                    problems.append(f"{where}: box {line.strip()!r} lies outside the image")
                    continue
                rows.append([max(0.0, x1), max(0.0, y1), min(1.0, x2), min(1.0, y2),
                             names[cls] if names is not None else str(cls)])
        inputs.append(str(f.resolve()))
        labels.append(rows)
    _report(path, problems, options, "label line")
    return pd.DataFrame({input_col: inputs, label_col: pd.Series(labels, dtype=object)})
