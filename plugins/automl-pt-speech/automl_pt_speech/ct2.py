"""A small reader of CTranslate2's ``model.bin`` format (pure Python + numpy).

The format (binary version 6, written by ``ctranslate2.specs.model_spec.ModelSpec._serialize``),
all integers little-endian::

    u32 binary_version                      # 6
    str spec_name                           # e.g. "WhisperSpec"
    u32 spec_revision
    u32 n_variables
    n_variables x:
        str  name                           # scope path, e.g. "encoder/layer_0/ffn/linear_0/weight"
        u8   ndim
        u32  dim[ndim]
        u8   dtype_id                       # 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16
        u32  num_bytes
        byte data[num_bytes]                # C order
    u32 n_aliases
    n_aliases x: str alias, str target      # alias names a variable stored once (tied weights)

    str := u16 length (including the trailing NUL) + UTF-8 bytes + NUL

Scalars (``ndim == 0``) hold layer options (activation id, ``num_heads``, ``pre_norm``...).
Quantized weights (``int8`` / ``int16``) come with a ``<name>_scale`` variable;
:func:`dequantize` turns them back into float32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl_pt.errors import BackboneError

SUPPORTED_BINARY_VERSIONS = (6,)
_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16",
                           5: "bfloat16"}


class CT2FormatError(BackboneError):
    """A ``model.bin`` file is not a CTranslate2 model this reader understands."""


@dataclass
class CT2Model:
    """The content of a ``model.bin``: spec name and revision, variables by name (aliases
    resolved: an alias maps to the same array as its target) and the alias table."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def scalar(self, name: str) -> int | float:
        return self.variables[name].reshape(()).item()

    def layer_count(self, prefix: str) -> int:
        """How many ``<prefix>/layer_<i>/...`` blocks there are (e.g. ``prefix="encoder"``)."""
        n = 0
        while any(k.startswith(f"{prefix}/layer_{n}/") for k in self.variables):
            n += 1
        return n


class _Cursor:
    def __init__(self, data: memoryview, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise CT2FormatError(f"{self.path}: truncated CTranslate2 model (wanted {n} bytes at "
                                 f"offset {self.pos}, file has {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def string(self) -> str:
        n = self.unpack("H")
        raw = bytes(self.take(n))
        if n == 0 or raw[-1] != 0:
            raise CT2FormatError(f"{self.path}: corrupt string at offset {self.pos - n}")
        return raw[:-1].decode("utf-8")


def _to_array(raw: memoryview, dtype_id: int, shape: tuple[int, ...], name: str,
              path: Path) -> np.ndarray:
    if dtype_id not in _DTYPES:
        raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
    dtype = _DTYPES[dtype_id]
    if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32's top half
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    count = int(np.prod(shape)) if shape else 1
    if array.size != count:
        raise CT2FormatError(f"{path}: variable {name!r} has {array.size} values for shape {shape}")
    return array.reshape(shape)


def read_ct2_model(path: str | Path) -> CT2Model:
    """Read ``model.bin`` (or a folder holding it). Arrays are read-only views of the file's
    bytes (no copy). Raises :class:`CT2FormatError` for anything unexpected."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise CT2FormatError(f"{path}: no CTranslate2 model.bin here")
    cur = _Cursor(memoryview(path.read_bytes()), path)
    version = cur.unpack("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise CT2FormatError(f"{path}: CTranslate2 binary version {version} is not supported "
                             f"(supported: {', '.join(map(str, SUPPORTED_BINARY_VERSIONS))}); "
                             "re-convert the model with a recent ctranslate2")
    spec = cur.string()
    revision = cur.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(cur.unpack("I")):
        name = cur.string()
        shape = tuple(cur.unpack("I") for _ in range(cur.unpack("B")))
        dtype_id = cur.unpack("B")
        raw = cur.take(cur.unpack("I"))
        variables[name] = _to_array(raw, dtype_id, shape, name, path)
    aliases: dict[str, str] = {}
    for _ in range(cur.unpack("I")):
        alias, target = cur.string(), cur.string()
        if target not in variables:
            raise CT2FormatError(f"{path}: alias {alias!r} points to unknown variable {target!r}")
        aliases[alias] = target
        variables[alias] = variables[target]
    if cur.pos != len(cur.data):
        raise CT2FormatError(f"{path}: {len(cur.data) - cur.pos} unexpected trailing bytes")
    return CT2Model(spec, revision, version, variables, aliases)


def dequantize(model: CT2Model, name: str) -> np.ndarray:
    """``name`` as float32: int8 weights are divided by their per-row ``<name>_scale``, int16 by
    their scalar scale; float variables are just widened."""
    value = model.variables[name]
    if value.dtype in (np.int8, np.int16) and f"{name}_scale" in model.variables:
        scale = model.variables[f"{name}_scale"].astype(np.float32)
        if scale.ndim == 1:
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
        return value.astype(np.float32) / scale
    return value.astype(np.float32)


def write_ct2_model(path: str | Path, spec: str, revision: int, variables: dict[str, np.ndarray],
                    aliases: dict[str, str] | None = None) -> None:
    """Write a ``model.bin`` (same layout as CTranslate2). Used by the tests to build small
    models; ``variables`` must be float32 / float16 / int8 / int16 / int32 numpy arrays."""
    ids = {v: k for k, v in _DTYPES.items() if v != "bfloat16"}

    def string(s: str) -> bytes:
        b = s.encode("utf-8")
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    out = [struct.pack("<I", 6), string(spec), struct.pack("<I", revision),
           struct.pack("<I", len(variables))]
    for name, value in variables.items():
        value = np.ascontiguousarray(value)
        out += [string(name), struct.pack("<B", value.ndim),
                b"".join(struct.pack("<I", d) for d in value.shape),
                struct.pack("<B", ids[value.dtype.name]), struct.pack("<I", value.nbytes),
                value.astype(value.dtype.newbyteorder("<")).tobytes()]
    out.append(struct.pack("<I", len(aliases or {})))
    for alias, target in (aliases or {}).items():
        out += [string(alias), string(target)]
    Path(path).write_bytes(b"".join(out))
