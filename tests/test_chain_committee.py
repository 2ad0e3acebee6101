import pytest

from edgechain.chain import Committee, parse_faults, quorum_threshold, validity_threshold
from edgechain.chain.faults import FaultKind, ValidatorFault, format_faults
from edgechain.chain.keys import generate_key, public_bytes
from edgechain.errors import UsageError

# N -> (validity, quorum), from validity = ceil(N/3), quorum = ceil((N + validity)/2).
THRESHOLDS = {
    1: (1, 1),
    2: (1, 2),
    3: (1, 2),
    4: (2, 3),
    5: (2, 4),
    6: (2, 4),
    7: (3, 5),
    8: (3, 6),
    9: (3, 6),
    10: (4, 7),
}


@pytest.mark.parametrize("n", sorted(THRESHOLDS))
def test_threshold_table(n):
    assert (validity_threshold(n), quorum_threshold(n)) == THRESHOLDS[n]


def test_committee_thresholds_and_tolerance():
    committee = Committee.from_public_keys([public_bytes(generate_key()) for _ in range(7)])
    assert committee.names == ["v1", "v2", "v3", "v4", "v5", "v6", "v7"]
    assert (committee.validity, committee.quorum, committee.tolerated_faults) == (3, 5, 2)


@pytest.mark.parametrize("n", [0, -1])
def test_threshold_rejects_empty_committee(n):
    with pytest.raises(UsageError):
        quorum_threshold(n)


def test_committee_json_round_trip_keeps_hash():
    committee = Committee.from_public_keys([public_bytes(generate_key()) for _ in range(4)])
    again = Committee.from_json(committee.to_json())
    assert again.hash() == committee.hash()


def test_fault_spec_string():
    faults = parse_faults("v2=offline, v3=wrong-state,v4=slow:0.5", ["v1", "v2", "v3", "v4"])
    assert faults == {
        "v2": ValidatorFault(FaultKind.OFFLINE),
        "v3": ValidatorFault(FaultKind.WRONG_STATE),
        "v4": ValidatorFault(FaultKind.SLOW, 0.5),
    }
    assert format_faults(faults) == "v2=offline,v3=wrong-state,v4=slow:0.5"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("v9=offline", "unknown validator"),
        ("v1=sleepy", "unknown fault"),
        ("v1", "validator=fault"),
        ("v1=offline:3", "takes no argument"),
        ("v1=slow:soon", "not a number"),
        ("v1=offline,v1=slow", "two faults"),
    ],
)
def test_fault_spec_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_faults(spec, ["v1", "v2"])
