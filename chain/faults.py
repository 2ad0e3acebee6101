"""Faulty-validator behaviours for tests and demos, and the CLI's fault spec string.

Spec string: comma-separated ``validator=fault`` pairs, e.g. ``"v2=offline,v3=wrong-state"``;
``slow`` takes an optional delay in seconds, ``"v4=slow:0.5"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from edgechain.errors import UsageError


class FaultKind(Enum):
    OFFLINE = "offline"  # unreachable: never votes
    SLOW = "slow"  # votes correctly, but only after a delay (beyond the vote timeout by default)
    BAD_SIGNATURE = "bad-signature"  # votes with a signature that does not verify
    WRONG_STATE = "wrong-state"  # signs the block with a state hash it did not compute
    EQUIVOCATE = "equivocate"  # signs the proposal and a conflicting block at the same height
    # Re-executes a block's oracle calls (a story's generation) with a perturbed result, so it
    # disagrees with the recorded response and does not sign.
    WRONG_OUTPUT = "wrong-output"
    # Keeps no blobs (its blob storage is lost): it cannot vote for a block that publishes or
    # references one, and serves none (chain/blobs.py).
    MISSING_BLOBS = "missing-blobs"


_ALIASES = {
    "offline": FaultKind.OFFLINE,
    "slow": FaultKind.SLOW,
    "bad-signature": FaultKind.BAD_SIGNATURE,
    "bad-sig": FaultKind.BAD_SIGNATURE,
    "wrong-state": FaultKind.WRONG_STATE,
    "wrong-state-hash": FaultKind.WRONG_STATE,
    "equivocate": FaultKind.EQUIVOCATE,
    "equivocating": FaultKind.EQUIVOCATE,
    "wrong-output": FaultKind.WRONG_OUTPUT,
    "missing-blobs": FaultKind.MISSING_BLOBS,
}


@dataclass(frozen=True)
class ValidatorFault:
    """One validator's fault. ``delay`` (seconds) applies to SLOW; None means 'past the timeout'."""

    kind: FaultKind
    delay: float | None = None

    def __str__(self) -> str:
        if self.kind is FaultKind.SLOW and self.delay is not None:
            return f"slow:{self.delay:g}"
        return self.kind.value

    @classmethod
    def parse(cls, text: str) -> ValidatorFault:
        name, _, arg = text.strip().lower().partition(":")
        kind = _ALIASES.get(name)
        if kind is None:
            known = ", ".join(k.value for k in FaultKind)
            raise UsageError(f"unknown fault {text!r} (known: {known})")
        if not arg:
            return cls(kind)
        if kind is not FaultKind.SLOW:
            raise UsageError(f"fault {name!r} takes no argument")
        try:
            delay = float(arg)
        except ValueError:
            raise UsageError(f"slow fault delay {arg!r} is not a number of seconds") from None
        if not 0 <= delay <= 3600:
            raise UsageError(f"slow fault delay {delay} is outside [0, 3600] seconds")
        return cls(kind, delay)


FaultMap = dict[str, ValidatorFault]


def parse_faults(
    spec: str | Mapping[str, str | ValidatorFault] | None, validators: Iterable[str]
) -> FaultMap:
    """Parse a spec string or mapping into {validator name: ValidatorFault}, checking the names."""
    if spec is None:
        return {}
    names = list(validators)
    pairs: list[tuple[str, str | ValidatorFault]] = []
    if isinstance(spec, str):
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, fault = item.partition("=")
            if not sep:
                raise UsageError(f"fault {item!r} is not of the form validator=fault")
            pairs.append((name.strip(), fault))
    else:
        pairs = list(spec.items())
    faults: FaultMap = {}
    for name, fault in pairs:
        if name not in names:
            raise UsageError(f"fault for unknown validator {name!r} (validators: {names})")
        if name in faults:
            raise UsageError(f"two faults given for validator {name!r}")
        faults[name] = fault if isinstance(fault, ValidatorFault) else ValidatorFault.parse(fault)
    return faults


def format_faults(faults: Mapping[str, ValidatorFault]) -> str:
    """The spec string of ``faults`` (inverse of :func:`parse_faults`)."""
    return ",".join(f"{name}={fault}" for name, fault in faults.items())
