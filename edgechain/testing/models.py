"""Where the stories260K files are: the one place that knows (tests, plugin, examples use it).

Looks in ``$EDGECHAIN_MODELS_DIR`` (the directory holding the files, or its parent), then in
``../shared/models/stories260K`` beside the checkout (and beside any other root the caller
names, such as pytest's rootdir).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgechain.service.engine import Engine, LoadedModel

__all__ = [
    "MODELS_DIR_ENV",
    "STORIES260K",
    "ModelFiles",
    "locate_stories260k",
    "stories260k",
    "stories260k_golden",
]

#: Environment variable naming where the stories260K files are.
MODELS_DIR_ENV = "EDGECHAIN_MODELS_DIR"

#: The model's name, and its directory's under ``shared/models``.
STORIES260K = "stories260K"
STORIES260K_WEIGHTS = "stories260K.bin"
STORIES260K_TOKENIZER = "tok512.bin"
#: llama2.c's greedy output for "Once upon a time", 256 positions (the engines' golden test).
STORIES260K_GOLDEN = "greedy_once_upon_a_time_256.txt"
STORIES260K_WEIGHTS_BLAKE3 = "33b6153460934101fae04b6653a29b8b73f6fbc63fb7c7235e1dd384a8466761"
STORIES260K_TOKENIZER_BLAKE3 = "bea8bff3631187f72e18431d4c84414bdb0769993347cff30db1d233c8f25fff"

#: The repository checkout this module lives in (an editable install's source tree).
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ModelFiles:
    """A llama2.c model on disk: checkpoint, tokenizer and, when known, their BLAKE3 hashes."""

    weights: Path
    tokenizer: Path
    weights_blake3: str | None = None
    tokenizer_blake3: str | None = None

    @property
    def directory(self) -> Path:
        return self.weights.parent

    def load(self, engine: Engine) -> LoadedModel:
        """The pair loaded in ``engine`` (the caller closes it)."""
        return engine.load(self.weights.read_bytes(), self.tokenizer.read_bytes())


def locate_stories260k(extra_roots: tuple[Path, ...] = ()) -> ModelFiles | list[Path]:
    """The stories260K files, or the directories searched when they are nowhere to be found.

    Looks in ``$EDGECHAIN_MODELS_DIR`` (or its ``stories260K`` sub-directory), then in
    ``<root>/../shared/models/stories260K`` for this checkout and each of ``extra_roots``.
    """
    candidates: list[Path] = []
    explicit = os.environ.get(MODELS_DIR_ENV)
    if explicit:
        candidates += [Path(explicit), Path(explicit) / STORIES260K]
    for root in (_REPO_ROOT, *extra_roots):
        candidates.append(root.parent / "shared" / "models" / STORIES260K)
    for directory in candidates:
        weights = directory / STORIES260K_WEIGHTS
        tokenizer = directory / STORIES260K_TOKENIZER
        if weights.is_file() and tokenizer.is_file():
            return ModelFiles(
                weights, tokenizer, STORIES260K_WEIGHTS_BLAKE3, STORIES260K_TOKENIZER_BLAKE3
            )
    return candidates


def stories260k(extra_roots: tuple[Path, ...] = ()) -> ModelFiles:
    """The stories260K files; FileNotFoundError naming the places searched when absent."""
    found = locate_stories260k(extra_roots)
    if isinstance(found, ModelFiles):
        return found
    searched = ", ".join(str(p) for p in dict.fromkeys(found))
    raise FileNotFoundError(
        f"{STORIES260K} ({STORIES260K_WEIGHTS}, {STORIES260K_TOKENIZER}) not found; searched "
        f"{searched}; set ${MODELS_DIR_ENV} to the directory holding them"
    )


def stories260k_golden(files: ModelFiles | None = None) -> bytes:
    """llama2.c's greedy 256-position output for "Once upon a time" (beside the files)."""
    return ((files or stories260k()).directory / STORIES260K_GOLDEN).read_bytes()
