"""The ``generate`` request: one definition every front door derives its parameters from.

:class:`GenerateQuery` is a dataclass whose fields carry a :class:`Parameter` spec (type, range,
help, run.c's short flag). ``edgechain generate``'s flags, the GraphQL ``generate`` query and
subscription arguments and the SSE endpoint's URL parameters are all built from
:func:`parameters`, so defaults and ranges are the same wherever a query comes from, and a new
engine parameter added here is reachable from all of them.

Names: the field name (``max_tokens``) is the library's and the JSON record's; GraphQL and URL
parameters use its camelCase (``maxTokens``); the CLI its kebab-case (``--max-tokens``) plus the
short flag, if any.

Constructing a ``GenerateQuery`` validates it (types, ranges, text): a bad value is
InvalidParameter (exit 2), text that is not valid Unicode (lone surrogates, which is how
non-UTF-8 bytes on a command line arrive) is InvalidText (exit 3). Values are normalised
(``stop`` to a tuple, a decimal-string ``seed`` to an int, an int given for a float field to
a float).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from edgechain.errors import InvalidParameter, InvalidText
from edgechain.service.engine.base import GenerationParams
from edgechain.service.seed import SeedQuery

__all__ = [
    "MAX_PROMPT_BYTES",
    "GenerateQuery",
    "Parameter",
    "defaults",
    "parameters",
    "required",
    "seed_parameters",
]

#: The longest prompt a query may carry, in bytes (a model's context is far shorter anyway).
MAX_PROMPT_BYTES = 64 * 1024

_U64_MAX = 2**64 - 1
_I31_MAX = 2**31 - 1

#: The kinds of value a parameter holds (each front door maps them to its own types).
KINDS = ("text", "int", "float", "u64", "texts")


@dataclass(frozen=True)
class Parameter:
    """How one field of a query is typed, bounded, documented and spelled on the CLI."""

    kind: str  # one of KINDS
    help: str
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
        """The allowed range for help text (``in (0, 1]``, ``>= 0``), or ''."""
        lo, hi = self.minimum, self.maximum
        if self.kind == "u64":
            return "in [0, 2^64 - 1]"
        if hi is not None and hi >= _I31_MAX:
            hi = None  # the engine's integer limit, not a meaningful bound
        if lo is not None and hi is not None:
            left = "(" if self.exclusive_minimum else "["
            return f"in {left}{_num(lo)}, {_num(hi)}]"
        if lo is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {_num(lo)}"
        return ""

    # --- values ------------------------------------------------------------------------------

    def parse(self, text: str, name: str) -> Any:
        """A value from its text (a URL parameter, a CLI argument); InvalidParameter if it is
        not of the parameter's type. Ranges are checked by :meth:`check`."""
        if self.kind in ("text", "texts"):
            return text
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
            value = float(value)
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


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _param(default: Any, spec: Parameter) -> Any:
    return dataclasses.field(default=default, metadata={"parameter": spec})


@dataclass(frozen=True)
class GenerateQuery:
    """A ``generate`` query: which certified model, the prompt, and how to sample.

    ``seed=None`` derives the seed from certified state and the query (see :meth:`seed_query`).
    """

    model: str = dataclasses.field(
        metadata={"parameter": Parameter("text", "registered model name")}
    )
    prompt: str = _param(
        "",
        Parameter("text", "input prompt", short="i", max_bytes=MAX_PROMPT_BYTES),
    )
    version: str | None = _param(
        None, Parameter("text", "model version", default_help="the latest active one")
    )
    max_tokens: int = _param(
        256,
        Parameter(
            "int",
            "new tokens to generate at most, prompt excluded",
            short="n",
            minimum=1,
            maximum=_I31_MAX,
            in_seed=False,
        ),
    )
    temperature: float = _param(
        0.8, Parameter("float", "0 = greedy argmax; higher is more random", short="t", minimum=0)
    )
    top_p: float = _param(
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
    repeat_penalty: float = _param(
        1.0, Parameter("float", "penalise recently seen tokens; 1 = off", minimum=1)
    )
    repeat_window: int = _param(
        64,
        Parameter(
            "int",
            "how many recent tokens (prompt included) the repeat penalty looks at",
            minimum=0,
            maximum=_I31_MAX,
        ),
    )
    stop: tuple[str, ...] = _param(
        (),
        Parameter(
            "texts",
            "stop once the generated text contains this string (repeatable)",
            in_seed=False,
        ),
    )
    seed: int | None = _param(
        None,
        Parameter(
            "u64",
            "random seed",
            default_help="derived from the chain id, the certified block hash, the application "
            "id and the query, so the same query on the same state repeats",
            short="s",
            minimum=0,
            maximum=_U64_MAX,
            in_seed=False,
        ),
    )

    def __post_init__(self) -> None:
        for name, spec in parameters().items():
            value = getattr(self, name)
            if value is None and name in _REQUIRED:
                raise InvalidParameter(f"{name} is required")
            object.__setattr__(self, name, spec.check(value, name))

    def params(self, seed: int) -> GenerationParams:
        """The engine parameters of this query, validated."""
        return GenerationParams(
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed,
            max_tokens=self.max_tokens,
            repeat_penalty=self.repeat_penalty,
            repeat_window=self.repeat_window,
            stop=tuple(self.stop),
        ).validate()

    def seed_query(self, version: str) -> SeedQuery:
        """What the derived seed covers: model, version, prompt and the sampling parameters
        (temperature, top_p, repeat_penalty, repeat_window). Not the token budget nor the
        stop strings, so ``max_tokens=20`` generates a prefix of ``max_tokens=60``."""
        return SeedQuery(
            model=self.model,
            version=version,
            prompt=self.prompt,
            params={name: getattr(self, name) for name in seed_parameters()},
        )

    def to_dict(self) -> dict[str, Any]:
        """The query's fields as JSON-ready values (a seed as a decimal string)."""
        out: dict[str, Any] = {}
        for name in parameters():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        if self.seed is not None:
            out["seed"] = str(self.seed)
        return out


_REQUIRED = frozenset(
    f.name
    for f in dataclasses.fields(GenerateQuery)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


def parameters() -> dict[str, Parameter]:
    """Every field of :class:`GenerateQuery` with its spec, in declaration order."""
    return {f.name: f.metadata["parameter"] for f in dataclasses.fields(GenerateQuery)}


def required() -> frozenset[str]:
    """The fields a query must give (no default): the model."""
    return _REQUIRED


def defaults() -> dict[str, Any]:
    """The default of every optional field."""
    return {
        f.name: f.default for f in dataclasses.fields(GenerateQuery) if f.name not in _REQUIRED
    }


def seed_parameters() -> tuple[str, ...]:
    """The generation parameters that enter the derived seed (besides model, version, prompt)."""
    return tuple(
        name
        for name, spec in parameters().items()
        if spec.in_seed and name not in ("model", "version", "prompt")
    )
