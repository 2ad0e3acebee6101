"""The generation request, declared once: every field's name, type, range, default, whether it
enters the derived seed, and its canonical encoding.

It lives in the contract layer because it is recorded on chain (a story book's ``MintStory``
carries it) and in receipts. Everything else derives from it: ``edgechain generate``'s flags,
the GraphQL ``generate`` arguments, the SSE endpoint's URL parameters
(service/query.py's ``GenerateQuery`` adds the engine mapping and the seed inputs), the
receipt codec (service/receipt.py) and ``MintStory``'s checks (contract/story_book.py). The
engine (``service/engine/base.py``'s ``GenerationParams``), the Rust crate and linera_app keep
their own copies of the sampling fields and defaults; tests/test_generation_request_fronts.py
holds them to this declaration.

Names: the field name (``max_tokens``) is the library's and the JSON record's; GraphQL and URL
parameters use its camelCase (``maxTokens``); the CLI its kebab-case (``--max-tokens``) plus the
short flag, if any.

Parts: ``target`` fields (model, version, prompt) say what runs on what; ``sampling`` fields are
the engine's parameters and the ``parameters`` map of receipts and mints, in canonical encoding
(integers as JSON integers, floats as the shortest round-trip text, ``repr``, so one number has
one spelling; strings as a list); ``seed`` is recorded on its own, as a decimal string.

Constructing a :class:`GenerationRequest` validates it (types, ranges, text): a bad value is
InvalidParameter (exit 2), text that is not valid Unicode (lone surrogates, which is how
non-UTF-8 bytes on a command line arrive) is InvalidText (exit 3). Values are normalised
(``stop`` to a tuple, a decimal-string ``seed`` to an int, an int given for a float field to
a float). Ranges are the engine's real ones: integers fit its i32, floats its f32.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgechain.chat_message import ChatMessage
from edgechain.errors import InvalidParameter, InvalidText

__all__ = [
    "F32_MAX",
    "I31_MAX",
    "MAX_PROMPT_BYTES",
    "ROLES",
    "U64_MAX",
    "ChatMessage",
    "GenerationRequest",
    "Parameter",
    "decode_parameters",
    "defaults",
    "encode_parameters",
    "parameters",
    "parameters_problem",
    "required",
    "sampling_parameters",
    "seed_parameters",
]

#: The longest prompt a request may carry, in bytes (a model's context is far shorter anyway).
MAX_PROMPT_BYTES = 64 * 1024

U64_MAX = 2**64 - 1
#: The engine's integers are i32 (rust_guest): the largest count it takes.
I31_MAX = 2**31 - 1
#: The engine samples in f32: the largest finite float it takes.
F32_MAX = 3.4028234663852886e38

#: The roles a message may have (what chat templates expect; a template refuses an order it
#: does not take, with ChatTemplateError).
ROLES = ("system", "user", "assistant", "tool")

#: The kinds of value a parameter holds (each front door maps them to its own types).
KINDS = ("text", "int", "float", "u64", "texts", "messages")
#: What a field is for (see the module docstring).
PARTS = ("target", "sampling", "seed")
#: The JSON type of each kind's canonical encoding (a ``parameters`` map's values).
_ENCODED_TYPES: dict[str, type] = {
    "int": int,
    "float": str,
    "texts": list,
    "text": str,
    "u64": str,
    "messages": list,
}


@dataclass(frozen=True)
class Parameter:
    """How one field of a request is typed, bounded, documented, spelled and encoded."""

    kind: str  # one of KINDS
    help: str
    part: str = "sampling"  # one of PARTS
    short: str | None = None  # run.c's letter, for the CLI
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    #: Whether the field enters the derived seed. Limits that only say where to stop (the
    #: token budget, stop strings) do not: a longer budget extends the same text.
    in_seed: bool = True
    max_bytes: int | None = None  # for text
    #: What the default means, when its value alone does not say (None: derived).
    default_help: str | None = None

    # --- the names of the field at each front door ----------------------------------------

    @staticmethod
    def camel(name: str) -> str:
        """GraphQL and URL spelling: ``max_tokens`` -> ``maxTokens``."""
        head, *rest = name.split("_")
        return head + "".join(part.capitalize() for part in rest)

    @staticmethod
    def flag(name: str) -> str:
        """CLI spelling: ``max_tokens`` -> ``--max-tokens``."""
        return "--" + name.replace("_", "-")

    def describe(self, default: Any, show_value: bool = True) -> str:
        """The help text with the range and the default, for the CLI and GraphQL (whose
        schema shows default values itself: ``show_value=False``)."""
        if self.default_help is not None:
            shown = self.default_help
        elif not show_value or default is None or default == ():
            shown = ""
        else:
            shown = repr(default) if isinstance(default, str) else str(default)
        details = [d for d in (self.range_text(), shown and f"default {shown}") if d]
        return self.help + (f" ({'; '.join(details)})" if details else "")

    def range_text(self) -> str:
        """The allowed range (``in (0, 1]``, ``>= 1 and <= 2147483647``), or ''."""
        lo, hi = self.minimum, self.maximum
        if self.kind == "u64":
            return "in [0, 2^64 - 1]"
        if lo is None:
            return "" if hi is None else f"<= {_num(hi)}"
        if hi is not None and hi < I31_MAX:  # a range of its own, not the engine's type limit
            left = "(" if self.exclusive_minimum else "["
            return f"in {left}{_num(lo)}, {_num(hi)}]"
        low = f"{'>' if self.exclusive_minimum else '>='} {_num(lo)}"
        return low if hi is None else f"{low} and <= {_num(hi)}"

    # --- values ------------------------------------------------------------------------------

    def parse(self, text: str, name: str) -> Any:
        """A value from its text (a URL parameter, a CLI argument); InvalidParameter if it is
        not of the parameter's type. Ranges are checked by :meth:`check`."""
        if self.kind in ("text", "texts"):
            return text
        if self.kind == "messages":
            try:
                return json.loads(text)
            except ValueError as err:
                raise InvalidParameter(
                    f'{name} must be a JSON list of {{"role", "content"}} objects: {err}'
                ) from None
        try:
            if self.kind == "float":
                return float(text)
            return int(text.strip(), 10)
        except ValueError:
            what = "a number" if self.kind == "float" else "an integer"
            raise InvalidParameter(f"{name} must be {what}, got {text!r}") from None

    def check(self, value: Any, name: str) -> Any:
        """``value`` normalised, or InvalidParameter / InvalidText naming ``name``."""
        if value is None:
            return None
        if self.kind == "text":
            return self._text(value, name)
        if self.kind == "messages":
            return self._messages(value, name)
        if self.kind == "texts":
            if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
                raise InvalidParameter(f"{name} must be a list of strings, got {value!r}")
            items = tuple(self._text(item, name) for item in value)
            if any(not item for item in items):
                raise InvalidParameter(f"{name}: strings must not be empty")
            return items
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidParameter(f"{name} must be a number, got {value!r}")
            try:
                value = float(value)
            except OverflowError:  # an int past any float: out of range, said as such below
                raise InvalidParameter(f"{name} must be {self.range_text()}, got {value}") from None
            if not math.isfinite(value):
                raise InvalidParameter(f"{name} must be finite, got {value}")
        else:
            if isinstance(value, str):  # a decimal string: how JSON carries a u64 exactly
                value = self.parse(value, name)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidParameter(f"{name} must be an integer, got {value!r}")
        if not self._in_range(value):
            raise InvalidParameter(f"{name} must be {self.range_text()}, got {_num(value)}")
        return value

    def _in_range(self, value: float) -> bool:
        lo, hi = self.minimum, self.maximum
        if lo is not None and (value <= lo if self.exclusive_minimum else value < lo):
            return False
        return hi is None or value <= hi

    def _messages(self, value: Any, name: str) -> tuple[ChatMessage, ...]:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise InvalidParameter(
                f'{name} must be a list of {{"role", "content"}} objects, got {value!r}'[:200]
            )
        if not value:
            raise InvalidParameter(f"{name}: the list is empty (give at least one message)")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                if set(item) != {"role", "content"}:
                    raise InvalidParameter(
                        f"{name}[{i}] must have exactly the keys role and content, got "
                        f"{sorted(item)}"
                    )
                role, content = item["role"], item["content"]
            elif isinstance(item, ChatMessage):
                role, content = item.role, item.content
            else:
                raise InvalidParameter(
                    f'{name}[{i}] must be a {{"role", "content"}} object, got '
                    f"{type(item).__name__}"
                )
            role = self._text(role, f"{name}[{i}].role")
            if role not in ROLES:
                raise InvalidParameter(
                    f"{name}[{i}].role must be one of {', '.join(ROLES)}, got {role!r}"[:200]
                )
            out.append(ChatMessage(role, self._text(content, f"{name}[{i}].content")))
        if self.max_bytes is not None:
            size = sum(len(m.role.encode()) + len(m.content.encode()) for m in out)
            if size > self.max_bytes:
                raise InvalidParameter(f"{name} is longer than {self.max_bytes} bytes")
        return tuple(out)

    def _text(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise InvalidParameter(f"{name} must be text, got {type(value).__name__}")
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InvalidText(
                f"{name} is not valid UTF-8 text ({err.reason} at character {err.start})"
            ) from None
        if self.max_bytes is not None and len(data) > self.max_bytes:
            raise InvalidParameter(f"{name} is longer than {self.max_bytes} bytes")
        return value

    # --- canonical encoding (receipts, MintStory) ---------------------------------------------

    @property
    def encoded_type(self) -> type:
        """The JSON type of the canonical encoding."""
        return _ENCODED_TYPES[self.kind]

    def encode(self, value: Any) -> Any:
        """The canonical encoding of a checked value."""
        if self.kind == "float":
            return repr(float(value))
        if self.kind == "texts":
            return list(value)
        if self.kind == "messages":
            return None if value is None else [m.to_json() for m in value]
        if self.kind == "u64":
            return None if value is None else str(value)
        return value

    def is_canonical(self, encoded: Any) -> bool:
        """Whether ``encoded`` is a canonical encoding (of the right type; a float's shortest
        round-trip spelling only, so one number has one encoding)."""
        if isinstance(encoded, bool) or not isinstance(encoded, self.encoded_type):
            return False
        if self.kind == "float":
            try:
                return repr(float(encoded)) == encoded
            except ValueError:
                return False
        if self.kind == "texts":
            return all(isinstance(item, str) for item in encoded)
        if self.kind == "messages":
            return bool(encoded) and all(
                isinstance(item, dict)
                and set(item) == {"role", "content"}
                and all(isinstance(v, str) for v in item.values())
                for item in encoded
            )
        return True

    def decode(self, encoded: Any, name: str) -> Any:
        """The value a canonical encoding stands for (range not checked: the request does)."""
        if self.kind == "float":
            try:
                return float(encoded)
            except (TypeError, ValueError) as err:
                raise InvalidParameter(f"a sampling parameter is not a number: {err}") from None
        if self.kind in ("texts", "messages"):
            return tuple(encoded) if isinstance(encoded, list) else encoded
        return encoded


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def _field(default: Any, spec: Parameter) -> Any:
    return dataclasses.field(default=default, metadata={"parameter": spec})


@dataclass(frozen=True)
class GenerationRequest:
    """A generation request: which certified model, the prompt (or the messages the model's
    chat template renders: a chat form of generate, one answer), and how to sample.

    ``seed=None`` derives the seed from certified state and the request (service/seed.py).
    """

    model: str = dataclasses.field(
        metadata={"parameter": Parameter("text", "registered model name", part="target")}
    )
    prompt: str = _field(
        "",
        Parameter(
            "text", "input prompt", part="target", short="i", max_bytes=MAX_PROMPT_BYTES
        ),
    )
    messages: tuple[ChatMessage, ...] | None = _field(
        None,
        Parameter(
            "messages",
            "a dialogue instead of a prompt, rendered by the model's chat template (a GGUF "
            'file\'s): a JSON list of {"role", "content"} objects, roles '
            + ", ".join(ROLES),
            part="target",
            max_bytes=MAX_PROMPT_BYTES,
            default_help="none: the prompt is the input",
        ),
    )
    version: str | None = _field(
        None,
        Parameter(
            "text", "model version", part="target", default_help="the latest active one"
        ),
    )
    max_tokens: int = _field(
        256,
        Parameter(
            "int",
            "new tokens to generate at most, prompt excluded",
            short="n",
            minimum=1,
            maximum=I31_MAX,
            in_seed=False,
        ),
    )
    temperature: float = _field(
        0.8,
        Parameter(
            "float",
            "0 = greedy argmax; higher is more random",
            short="t",
            minimum=0,
            maximum=F32_MAX,
        ),
    )
    top_p: float = _field(
        0.9,
        Parameter(
            "float",
            "nucleus sampling: keep the most likely tokens up to this probability mass",
            short="p",
            minimum=0,
            maximum=1,
            exclusive_minimum=True,
        ),
    )
    repeat_penalty: float = _field(
        1.0,
        Parameter(
            "float", "penalise recently seen tokens; 1 = off", minimum=1, maximum=F32_MAX
        ),
    )
    repeat_window: int = _field(
        64,
        Parameter(
            "int",
            "how many recent tokens (prompt included) the repeat penalty looks at",
            minimum=0,
            maximum=I31_MAX,
        ),
    )
    stop: tuple[str, ...] = _field(
        (),
        Parameter(
            "texts",
            "stop once the generated text contains this string (repeatable)",
            in_seed=False,
        ),
    )
    seed: int | None = _field(
        None,
        Parameter(
            "u64",
            "random seed",
            part="seed",
            default_help="derived from the chain id, the certified block hash, the application "
            "id and the query, so the same query on the same state repeats",
            short="s",
            minimum=0,
            maximum=U64_MAX,
            in_seed=False,
        ),
    )

    def __post_init__(self) -> None:
        for name, spec in parameters().items():
            value = getattr(self, name)
            if value is None and name in _REQUIRED:
                raise InvalidParameter(f"{name} is required")
            object.__setattr__(self, name, spec.check(value, name))
        if self.messages is not None and self.prompt:
            raise InvalidParameter("give either a prompt or messages, not both")

    def to_dict(self) -> dict[str, Any]:
        """The request's fields as JSON-ready values (a seed as a decimal string)."""
        out: dict[str, Any] = {}
        specs = parameters()
        for name, spec in specs.items():
            value = getattr(self, name)
            if spec.kind == "messages":
                out[name] = spec.encode(value)
            else:
                out[name] = list(value) if isinstance(value, tuple) else value
        if self.seed is not None:
            out["seed"] = str(self.seed)
        return out

    def encoded_parameters(self) -> dict[str, Any]:
        """The sampling fields in canonical encoding (a receipt's and a mint's ``parameters``)."""
        specs = parameters()
        return {name: specs[name].encode(getattr(self, name)) for name in sampling_parameters()}


_REQUIRED = frozenset(
    f.name
    for f in dataclasses.fields(GenerationRequest)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


def parameters() -> dict[str, Parameter]:
    """Every field of :class:`GenerationRequest` with its spec, in declaration order."""
    return {f.name: f.metadata["parameter"] for f in dataclasses.fields(GenerationRequest)}


def required() -> frozenset[str]:
    """The fields a request must give (no default): the model."""
    return _REQUIRED


def defaults() -> dict[str, Any]:
    """The default of every optional field."""
    return {
        f.name: f.default
        for f in dataclasses.fields(GenerationRequest)
        if f.name not in _REQUIRED
    }


def sampling_parameters() -> tuple[str, ...]:
    """The fields the engine samples with, and a receipt's or mint's ``parameters`` records."""
    return tuple(name for name, spec in parameters().items() if spec.part == "sampling")


def seed_parameters() -> tuple[str, ...]:
    """The sampling fields that enter the derived seed (besides model, version, prompt)."""
    specs = parameters()
    return tuple(name for name in sampling_parameters() if specs[name].in_seed)


def encode_parameters(request: GenerationRequest) -> dict[str, Any]:
    """``request``'s sampling fields in canonical encoding."""
    return request.encoded_parameters()


def parameters_problem(encoded: Any, *, canonical: bool = True) -> str | None:
    """What is wrong with a ``parameters`` map (its field set, a value's type; with
    ``canonical``, a float's spelling too), or None. Ranges are the request's to check."""
    specs = {name: parameters()[name] for name in sampling_parameters()}
    if not isinstance(encoded, dict) or set(encoded) != set(specs):
        return f"parameters must have exactly the fields {sorted(specs)}"
    for name, spec in specs.items():
        value = encoded[name]
        if canonical and not spec.is_canonical(value):
            return f"parameters.{name} is not a canonical {spec.kind} ({value!r})"
        if isinstance(value, bool) or not isinstance(value, spec.encoded_type):
            return f"parameters.{name} must be a {spec.encoded_type.__name__}"
        if spec.kind == "texts" and not all(isinstance(item, str) for item in value):
            return f"parameters.{name} must be a list of strings"
    return None


def decode_parameters(encoded: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling fields a ``parameters`` map encodes, as request keyword arguments
    (InvalidParameter for a missing field or a float that is not a number)."""
    specs = parameters()
    out: dict[str, Any] = {}
    for name in sampling_parameters():
        if name not in encoded:
            raise InvalidParameter(f"parameters: {name} is missing")
        out[name] = specs[name].decode(encoded[name], name)
    return out
