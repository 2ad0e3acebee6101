"""Check a GGUF file's header without reading its tensors: what ``model publish`` runs before it
proposes, so a file the engine would refuse is never certified. The engine's reader stays the
reference (rust_guest/src/gguf.rs, the container; rust_guest/src/gguf_model.rs, what it runs):
version 3, the ``llama``, ``qwen2`` and ``qwen3`` architectures, tensor types F32, F16, Q4_0,
Q8_0, Q4_K and Q6_K, every tensor inside the file, the ``llama`` or ``gpt2`` (pre-tokenizer qwen2
or llama-bpe) tokenizer with one token per embedding row. The metadata is walked through a
buffered stream; its arrays (the vocabulary) are counted and checked, not kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from edgechain.errors import InvalidCheckpoint, UnsupportedModel
from edgechain.service.engine.checkpoint_header import HeaderFields

MAGIC = b"GGUF"
VERSION = 3
DEFAULT_ALIGNMENT = 32
#: The engine's architectures and tensor types (gguf_model.rs).
ARCHITECTURES = ("llama", "qwen2", "qwen3")
#: ggml type id -> (name, values per block, bytes per block) of the types the engine runs.
TENSOR_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 8: ("Q8_0", 32, 34),
    12: ("Q4_K", 256, 144), 14: ("Q6_K", 256, 210),
}  # fmt: skip
#: The ``tokenizer.ggml.pre`` values of a ``gpt2`` vocabulary the engine splits text by.
GPT2_PRE_TOKENIZERS = ("qwen2", "llama-bpe")
#: The int8 path's group size when a Q6_K tensor is present (else 32 for any quantized type).
Q6_K_GROUP = 16
#: llama.cpp's names of the other type ids, for the refusal's message.
_OTHER_TYPES = {
    3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
    13: "Q5_K", 15: "Q8_K", 30: "BF16",
}  # fmt: skip
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF header declares: the model's dimensions as llama2.c's header fields
    (``group_size`` 16 when some matrix is Q6_K, else 32 when some matrix is quantized), the
    architecture and the tensor types."""

    header: HeaderFields
    architecture: str
    tensor_types: tuple[str, ...]
    #: Bytes of the tensors as the engine holds them (quantized: int8 values + f32 scales per
    #: group, and f32 offsets for Q4_K; F16 widened to f32) plus the file's own copy the
    #: engine parses them from.
    engine_bytes: int
    #: Values per attention head (``attention.key_length``, else ``dim / n_heads``).
    head_size: int = 0

    @property
    def kv_dim(self) -> int:
        """One position's keys (or values) in the KV cache."""
        return self.header.n_kv_heads * (self.head_size or self.header.head_size)


def is_gguf(head: bytes) -> bool:
    return head[:4] == MAGIC


class _Reader:
    def __init__(self, stream: BinaryIO, size: int, label: str) -> None:
        self.stream, self.size, self.label, self.at = stream, size, label, 0

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.at:
            raise InvalidCheckpoint(
                f"{self.label}: GGUF: truncated at byte {self.at} reading {what} ({n} bytes)"
            )
        data = self.stream.read(n)
        if len(data) < n:
            raise InvalidCheckpoint(f"{self.label}: GGUF: truncated at byte {self.at}")
        self.at += n
        return data

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what))

    def string(self, what: str) -> str:
        raw = self.take(self.u64(what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCheckpoint(f"{self.label}: GGUF: {what} is not UTF-8") from None

    def value(self, kind: int, key: str, depth: int = 0) -> object:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind], key)
        if kind == _STRING:
            return self.string(key)
        if kind == _ARRAY and depth == 0:
            item = int(self.unpack("<I", key))
            count = self.u64(key)
            if count > self.size - self.at:
                raise InvalidCheckpoint(f"{self.label}: GGUF: {key} has {count} items")
            if item in _SCALARS:  # numbers (scores, token types): skipped, not kept
                self.take(count * struct.calcsize(_SCALARS[item]), key)
                return [None] * count
            return [self.value(item, key, 1) for _ in range(count)]
        raise InvalidCheckpoint(f"{self.label}: GGUF: {key} has unknown value type {kind}")


def read_gguf_header(stream: BinaryIO, size: int, label: str) -> GgufInfo:
    """The header of the GGUF file ``stream`` (``size`` bytes, read from its start), checked as
    the engine checks it: InvalidCheckpoint for a malformed file, UnsupportedModel for what the
    engine does not run (naming it)."""
    r = _Reader(stream, size, label)
    if r.take(4, "the magic") != MAGIC:
        raise InvalidCheckpoint(f"{label}: not a GGUF file")
    version = int(r.unpack("<I", "the version"))
    if version != VERSION:
        raise InvalidCheckpoint(f"{label}: GGUF version {version} is not supported (only 3)")
    n_tensors, n_kv = r.u64("the tensor count"), r.u64("the metadata count")
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = r.string("a metadata key")
        meta[key] = r.value(int(r.unpack("<I", key)), key)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise InvalidCheckpoint(f"{label}: GGUF metadata general.architecture is missing")
    if arch not in ARCHITECTURES:
        raise UnsupportedModel(
            f"{label}: GGUF architecture '{arch}' is not supported "
            f"(supported: {', '.join(ARCHITECTURES)})"
        )
    tensors = []
    for _ in range(n_tensors):
        name = r.string("a tensor name")
        n_dims = int(r.unpack("<I", name))
        if not 1 <= n_dims <= 4:
            raise InvalidCheckpoint(f"{label}: GGUF tensor {name} has {n_dims} dimensions")
        dims = [r.u64(name) for _ in range(n_dims)][::-1]
        kind, offset = int(r.unpack("<I", name)), r.u64(name)
        if kind not in TENSOR_TYPES:
            type_name = _OTHER_TYPES.get(kind, f"type {kind}")
            supported = ", ".join(t[0] for t in TENSOR_TYPES.values())
            raise UnsupportedModel(
                f"{label}: GGUF tensor {name} is {type_name}; supported tensor types: {supported}"
            )
        tensors.append((name, dims, kind, offset))
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidCheckpoint(f"{label}: GGUF general.alignment {alignment!r}")
    data_offset = -(-r.at // alignment) * alignment
    engine_bytes = size
    group = _group_size([t[2] for t in tensors]) or 1
    types = []
    for name, dims, kind, offset in tensors:
        type_name, per_block, block_bytes = TENSOR_TYPES[kind]
        types.append(type_name)
        count = 1
        for d in dims:
            count *= d
        if dims[-1] % per_block:
            raise InvalidCheckpoint(f"{label}: GGUF tensor {name}'s rows are not whole blocks")
        end = data_offset + offset + count // per_block * block_bytes
        if end > size:
            raise InvalidCheckpoint(
                f"{label}: GGUF tensor {name} runs past the end of the {size}-byte file"
            )
        if per_block == 1:
            engine_bytes += count * 4
        else:
            # int8 values, an f32 scale per group, and for Q4_K an f32 offset per group.
            engine_bytes += count + (count // group) * 4 * (2 if kind == 12 else 1)
    header, head_size = _header_fields(meta, dict((t[0], t) for t in tensors), arch, label)
    return GgufInfo(header, arch, tuple(sorted(set(types))), engine_bytes, head_size)


def _header_fields(
    meta: dict[str, object], tensors: dict[str, tuple], arch: str, label: str
) -> tuple[HeaderFields, int]:
    """The header fields and the head size."""
    def count(key: str, default: int | None = None) -> int:
        value = meta.get(f"{arch}.{key}", default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidCheckpoint(f"{label}: GGUF metadata {arch}.{key} is {value!r}")
        return value

    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise InvalidCheckpoint(f"{label}: GGUF tensor token_embd.weight is missing")
    heads = count("attention.head_count")
    head_size = count("attention.key_length", count("embedding_length") // heads or 1)
    if count("attention.value_length", head_size) != head_size:
        raise UnsupportedModel(
            f"{label}: GGUF {arch} attention.value_length {meta[f'{arch}.attention.value_length']}"
            f" differs from attention.key_length {head_size} (not supported)"
        )
    vocab = embd[1][0]
    model = meta.get("tokenizer.ggml.model")
    if model not in ("llama", "gpt2"):
        raise UnsupportedModel(
            f"{label}: GGUF tokenizer model {model!r} is not supported (supported: llama, gpt2)"
        )
    pre = meta.get("tokenizer.ggml.pre", "default")
    if model == "gpt2" and pre not in GPT2_PRE_TOKENIZERS:
        raise UnsupportedModel(
            f"{label}: GGUF gpt2 pre-tokenizer {pre!r} is not supported "
            f"(supported: {', '.join(GPT2_PRE_TOKENIZERS)})"
        )
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or len(tokens) != vocab:
        n = len(tokens) if isinstance(tokens, list) else 0
        raise InvalidCheckpoint(
            f"{label}: GGUF vocabulary has {n} tokens, the embedding {vocab} rows"
        )
    fields = HeaderFields(
        dim=count("embedding_length"),
        hidden_dim=count("feed_forward_length"),
        n_layers=count("block_count"),
        n_heads=heads,
        n_kv_heads=count("attention.head_count_kv", heads),
        vocab_size=vocab,
        seq_len=count("context_length"),
        shared_classifier="output.weight" not in tensors,
        group_size=_group_size([t[2] for t in tensors.values()]),
    )
    return fields, head_size


def _group_size(kinds: list[int]) -> int | None:
    """The int8 path's group size for a file of these tensor types (gguf_model.rs's rule)."""
    if 14 in kinds:
        return Q6_K_GROUP
    return 32 if any(TENSOR_TYPES[k][1] > 1 for k in kinds) else None
