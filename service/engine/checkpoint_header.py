"""The fields of a llama2.c checkpoint header, declared once on the Python side (the engine's
declaration is ``CheckpointConfig`` in rust_guest/src/checkpoint/header.rs, which serialises the
same names for ``ec_model_info`` and ``Model.info()``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self


@dataclass(frozen=True)
class HeaderDims:
    """The header's seven i32 fields, in file order (run.c's ``Config``)."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    def i32_values(self) -> tuple[int, ...]:
        """The seven fields' values in file order (vocab_size as stored here: positive)."""
        return tuple(getattr(self, name) for name in HEADER_I32_FIELDS)


#: The names of the seven i32 fields, in file order.
HEADER_I32_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(HeaderDims))


@dataclass(frozen=True)
class HeaderFields(HeaderDims):
    """Every header field: the seven i32, whether the classifier is the token embedding, and the
    Q8_0 group size of an int8 (version 2) checkpoint (None for f32 weights)."""

    shared_classifier: bool
    group_size: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from the engines' info dict (the same keys); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
