"""Plain values across the trust boundary: what the grader sends to a kernel and what it accepts back.

A value is ``None``, a bool, int, float or str, a list or tuple of values, a dict with str keys,
or a tensor.  On the wire it is JSON; a tensor is ``{"$tensor": [dtype, shape, base64 bytes,
class name]}``.  :func:`decode` rebuilds values in the trusted process **without running any code
of the sender**: no pickle, only ``json`` and a byte buffer of a whitelisted dtype, so a tensor
subclass, a patched ``torch.Tensor`` or a forged object in the kernel arrives as a plain
``torch.Tensor`` or as :class:`Opaque`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["encode", "decode", "Opaque", "WireError", "MAX_BYTES"]

#: The dtypes a kernel may send (anything else is refused).
DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
    "uint8": torch.uint8, "bool": torch.bool,
}
#: The largest answer accepted from one probe (bytes of JSON).
MAX_BYTES = 64 * 1024 * 1024


class WireError(ValueError):
    """The kernel's answer is not a plain value (a message for the student says what came back)."""


@dataclass(frozen=True)
class Opaque:
    """Something the kernel could not send as a plain value (an ``nn.Module``, a generator ...)."""

    what: str


def encode(obj: Any) -> Any:
    """The JSON-ready form of a plain value (trusted side: inputs for a probe)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().clone(memory_format=torch.contiguous_format)  # standard strides
        name = str(t.dtype).replace("torch.", "")
        if name not in DTYPES:
            raise TypeError(f"cannot send a {t.dtype} tensor")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {"$tensor": [name, list(t.shape), base64.b64encode(raw).decode("ascii"), "Tensor"]}
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {"$dict": [[str(k), encode(v)] for k, v in obj.items()]}
    raise TypeError(f"cannot send a {type(obj).__name__} to the kernel")


def _tensor(spec: Any) -> torch.Tensor:
    if not (isinstance(spec, list) and len(spec) == 4):
        raise WireError("a malformed tensor")
    dtype_name, shape, data, _cls = spec
    if dtype_name not in DTYPES:
        raise WireError(f"a tensor of dtype {dtype_name!r}")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise WireError("a tensor with a malformed shape")
    if not isinstance(data, str):
        raise WireError("a tensor without data")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    dtype = DTYPES[dtype_name]
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if len(raw) != numel * itemsize:
        raise WireError("a tensor whose data does not match its shape")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def decode(obj: Any, depth: int = 0) -> Any:
    """Rebuild a plain value from its JSON form (trusted side: a probe's answer)."""
    if depth > 24:
        raise WireError("a value nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode(v, depth + 1) for v in obj]
    if isinstance(obj, dict):
        if "$tensor" in obj:
            return _tensor(obj["$tensor"])
        if "$tuple" in obj:
            items = obj["$tuple"]
            if not isinstance(items, list):
                raise WireError("a malformed tuple")
            return tuple(decode(v, depth + 1) for v in items)
        if "$dict" in obj:
            pairs = obj["$dict"]
            if not (isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 for p in pairs)):
                raise WireError("a malformed dict")
            return {str(k): decode(v, depth + 1) for k, v in pairs}
        if "$opaque" in obj:
            return Opaque(str(obj["$opaque"])[:100])
        raise WireError("an unknown kind of value")
    raise WireError(f"a {type(obj).__name__}")


def loads(text: str) -> Any:
    """Parse one JSON answer (size-limited)."""
    if len(text) > MAX_BYTES:
        raise WireError(f"an answer of {len(text)} bytes (at most {MAX_BYTES})")
    return json.loads(text)
