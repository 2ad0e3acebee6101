"""A third party verifies certificates with nothing but the committee's public keys."""

import json
from dataclasses import replace

import pytest
from chain_helpers import register

from edgechain.chain import Certificate, Committee, Network, verify_certificate
from edgechain.chain.keys import generate_key, public_bytes
from edgechain.errors import CertificateError


@pytest.fixture
def certified(tmp_path):
    """(certificate as JSON, block, public committee description) from a 4-validator network."""
    with Network.create(tmp_path / "net", validators=4) as net:
        chain = net.default_chain()
        cert = chain.execute(chain.app_id("model-registry"), register())
        block = chain.block(0).block
    public = json.loads((tmp_path / "net" / "network.json").read_text())["committee"]
    return json.dumps(cert.to_json()), block, public


def test_third_party_verifies_with_public_keys_only(certified):
    cert_json, block, public = certified
    committee = Committee.from_json(public)  # public keys only, no network, no database
    cert = Certificate.from_json(json.loads(cert_json))
    verify_certificate(cert, committee)
    verify_certificate(cert, committee, block)
    assert Certificate.decode(cert.encode()) == cert


def test_forged_signature_is_refused(certified):
    cert_json, _, public = certified
    cert = Certificate.from_json(json.loads(cert_json))
    name, sig = cert.signatures[0]
    forged = replace(
        cert, signatures=((name, bytes([sig[0] ^ 1]) + sig[1:]),) + cert.signatures[1:]
    )
    with pytest.raises(CertificateError, match=f"invalid signature from {name}"):
        verify_certificate(forged, Committee.from_json(public))


def test_other_state_hash_is_refused(certified):
    cert_json, _, public = certified
    cert = Certificate.from_json(json.loads(cert_json))
    with pytest.raises(CertificateError, match="invalid signature"):
        verify_certificate(replace(cert, state_hash=bytes(32)), Committee.from_json(public))


def test_too_few_signatures_are_refused(certified):
    cert_json, _, public = certified
    cert = Certificate.from_json(json.loads(cert_json))
    with pytest.raises(CertificateError, match="quorum is 3"):
        verify_certificate(
            replace(cert, signatures=cert.signatures[:2]), Committee.from_json(public)
        )


def test_repeated_signer_is_refused(certified):
    cert_json, _, public = certified
    cert = Certificate.from_json(json.loads(cert_json))
    doubled = (cert.signatures[0],) * 3
    with pytest.raises(CertificateError, match="repeats a signer"):
        verify_certificate(replace(cert, signatures=doubled), Committee.from_json(public))


def test_another_committee_rejects(certified):
    cert_json, _, _ = certified
    cert = Certificate.from_json(json.loads(cert_json))
    strangers = Committee.from_public_keys([public_bytes(generate_key()) for _ in range(4)])
    with pytest.raises(CertificateError):
        verify_certificate(cert, strangers)


def test_unknown_signer_is_refused(certified):
    cert_json, _, public = certified
    cert = Certificate.from_json(json.loads(cert_json))
    renamed = (("v9", cert.signatures[0][1]),) + cert.signatures[1:]
    with pytest.raises(CertificateError, match="not in the committee"):
        verify_certificate(replace(cert, signatures=renamed), Committee.from_json(public))


def test_certificate_for_another_block_is_refused(certified):
    cert_json, block, public = certified
    cert = Certificate.from_json(json.loads(cert_json))
    other = replace(block, timestamp_us=block.timestamp_us + 1)
    with pytest.raises(CertificateError, match="another block"):
        verify_certificate(cert, Committee.from_json(public), other)
