import blake3
import pytest

from edgechain.chain.encoding import decode, domain_tag, encode, hash_value
from edgechain.errors import InvalidEncoding


def test_golden_bytes():
    # Spelled out byte by byte from docs/chain.md: map keys sorted, u32 lengths, i64 integers.
    expected = bytes.fromhex(
        " ".join(
            [
                "07 00000003",  # map of 3 entries
                "05 00000001 61  04 00000001 01",  # "a": bytes 01
                "05 00000001 62  06 00000003",  # "b": list of 3
                "03 0000000000000001  00  02",  # 1, null, true
                "05 00000001 63  05 00000002 c3a9",  # "c": "é" in UTF-8
            ]
        )
    )
    assert encode({"c": "é", "b": [1, None, True], "a": b"\x01"}) == expected


def test_golden_hash_is_pinned():
    # If this changes, every stored chain becomes unverifiable: bump the domain version instead.
    value = [1, "x"]
    assert domain_tag("block") == b"edgechain/block/v1\x00"
    assert (
        hash_value("block", value)
        == blake3.blake3(b"edgechain/block/v1\x00" + encode(value)).digest()
    )
    assert hash_value("block", value).hex() == (
        "f8ab8b25b474034963bacfcebce180b733b7d91babb91538acee8a5e2bac8f59"
    )


def test_negative_integers_and_limits():
    assert encode(-1) == bytes.fromhex("03ffffffffffffffff")
    assert decode(encode(2**63 - 1)) == 2**63 - 1
    assert decode(encode(-(2**63))) == -(2**63)
    with pytest.raises(InvalidEncoding):
        encode(2**63)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        b"",
        b"\x00\xff",
        "",
        "héllo",
        [],
        [1, [2, [3]]],
        {},
        {"k": {"z": 1}},
    ],
)
def test_round_trip(value):
    assert decode(encode(value)) == value
    assert encode(decode(encode(value))) == encode(value)


def test_tuples_encode_as_lists_and_bool_is_not_int():
    assert encode((1, 2)) == encode([1, 2])
    assert encode(True) != encode(1)


@pytest.mark.parametrize("value", [1.5, {1: "a"}, {"a"}, object()])
def test_values_without_encoding(value):
    with pytest.raises(InvalidEncoding):
        encode(value)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "truncated"),
        (bytes.fromhex("0300"), "truncated"),
        (bytes.fromhex("0500000005616263"), "truncated"),
        (bytes.fromhex("09"), "unknown type tag"),
        (bytes.fromhex("0000"), "trailing"),
        (bytes.fromhex("0500000001ff"), "UTF-8"),
        # keys out of order: "b" before "a"
        (bytes.fromhex("07000000020500000001620005000000016100"), "increasing"),
        (bytes.fromhex("07000000010300000000000000010000"), "not a string"),
    ],
)
def test_non_canonical_bytes_are_refused(data, message):
    with pytest.raises(InvalidEncoding, match=message):
        decode(data)
