"""Reader of CTranslate2's `model.bin` (binary versions 1-6) into float32 torch tensors.

Layout (little-endian): u32 binary version; from version 2 a string spec name and u32 spec
revision; u32 variable count; per variable: string name, u8 rank, rank x u32 dims, then from
version 4 a u8 type id and u32 payload bytes (before: u8 item size and u32 element count), then
the payload; from version 3 a u32 alias count and (alias, target) string pairs. A string is a u16
length that counts a trailing NUL, then the bytes. Quantised weights (int8, int16) come with a
`<name>_scale` variable and dequantise as value / scale (scale per output row, or one scalar).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# type ids follow CTranslate2's DataType enum order
_TYPE_IDS = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEM_SIZE_TYPES = {4: np.float32, 2: np.float16, 1: np.int8}


@dataclass
class CT2Model:
    """Variables of one model.bin, dequantised to float32 where they were quantised."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, torch.Tensor]


class _Cursor:
    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ValueError(f"model.bin is truncated: needed {n} bytes at offset {self.pos}, "
                             f"file has {len(self.buf)}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        return bytes(self.take(n))[:-1].decode("utf-8")


def _array(payload: memoryview, dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """Payload bytes -> tensor (bfloat16 goes through int16 bits since numpy has no bfloat16)."""
    if dtype == "bfloat16":
        bits = np.frombuffer(payload, dtype=np.int16).copy()
        return torch.from_numpy(bits).view(torch.bfloat16).reshape(shape)
    return torch.from_numpy(np.frombuffer(payload, dtype=dtype).copy()).reshape(shape)


def _read_variable(cur: _Cursor, version: int) -> tuple[str, torch.Tensor]:
    name = cur.string()
    (rank,) = cur.unpack("B")
    shape = cur.unpack(f"{rank}I") if rank else ()
    if version >= 4:
        type_id, num_bytes = cur.unpack("BI")
        if type_id not in _TYPE_IDS:
            raise ValueError(f"model.bin variable {name!r}: unknown type id {type_id}")
        dtype = _TYPE_IDS[type_id]
    else:
        item_size, count = cur.unpack("BI")
        dtype, num_bytes = _ITEM_SIZE_TYPES[item_size], count * item_size
    return name, _array(cur.take(num_bytes), dtype, tuple(shape))


def _dequantise(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 copies of floating variables; int8/int16 weights divided by their `_scale`."""
    out = {}
    for name, value in raw.items():
        if name.endswith("_scale") and name[:-len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None and value.dtype in (torch.int8, torch.int16):
            s = scale.float()
            s = s.reshape(-1, *([1] * (value.dim() - 1))) if s.dim() else s
            out[name] = value.float() / s
        elif value.is_floating_point():
            out[name] = value.float()
        else:
            out[name] = value  # integer scalars such as num_heads
    return out


def read_ct2_model_bin(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 model.bin file; aliases become extra names for the same tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 model file not found: {path}")
    data = memoryview(path.read_bytes())
    cur = _Cursor(data)
    (version,) = cur.unpack("I")
    if not 1 <= version <= 6:
        raise ValueError(f"{path}: unsupported CTranslate2 binary version {version} (reader "
                         "handles 1-6)")
    spec, revision = "", 1
    if version >= 2:
        spec = cur.string()
        (revision,) = cur.unpack("I")
    (count,) = cur.unpack("I")
    raw = dict(_read_variable(cur, version) for _ in range(count))
    if version >= 3:
        (n_alias,) = cur.unpack("I")
        for _ in range(n_alias):
            alias, target = cur.string(), cur.string()
            raw[alias] = raw[target]
    return CT2Model(spec, revision, version, _dequantise(raw))
