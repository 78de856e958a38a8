"""The inbound message-type registry (mappings/hl7v2/registry.py): one declaration per message
type, found by walking mappings/hl7v2/messages/, read by the mapping, the ACK and the MLLP
listener's scopes."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import mappings.hl7v2.messages as package
from fhir_server.hl7v2.service import LISTENER_SCOPE
from mappings.hl7v2 import Hl7Error, map_parsed, parse, registry, supported
from mappings.hl7v2.spec import MessageType
from resources.validation import is_resource_type


def test_every_module_declares_one_message_type() -> None:
    modules = [i.name for i in pkgutil.iter_modules(package.__path__)]
    assert len(modules) >= 15
    for name in modules:
        declared = importlib.import_module(f"{package.__name__}.{name}").MESSAGE
        assert isinstance(declared, MessageType)
        assert declared.writes and all(is_resource_type(t) for t in declared.writes), name
        for event in declared.events:
            assert registry.lookup(declared.code, event) is declared


def test_the_set_the_issue_names_is_taken() -> None:
    taken = set(supported())
    for name in (
        "ADT^A01 ADT^A02 ADT^A03 ADT^A04 ADT^A05 ADT^A08 ADT^A11 ADT^A13 ADT^A28 ADT^A31 "
        "ADT^A40 ADT^A47 ORU^R01 OUL^R22 ORM^O01 OML^O21 OMG^O19 SIU^S12 SIU^S15 SIU^S26 "
        "MDM^T01 MDM^T11 VXU^V04 RDE^O11 RDE^O25 RDS^O13 BAR^P01 BAR^P12 DFT^P03 DFT^P11 "
        "REF^I12 REF^I14 PPR^PC1"
    ).split():
        assert name in taken, name


def test_the_listener_may_write_what_the_mappings_write() -> None:
    granted = {s.split("/")[1].split(".")[0] for s in LISTENER_SCOPE.split()}
    assert granted == set(registry.writes())
    assert "Appointment" in granted and "Immunization" in granted


def test_a_declaration_is_checked() -> None:
    with pytest.raises(ValueError):
        MessageType("adt", frozenset({"A01"}), "ADT_A01", frozenset({"Patient"}), lambda m, c: {})
    with pytest.raises(ValueError):
        MessageType("ADT", frozenset(), "ADT_A01", frozenset({"Patient"}), lambda m, c: {})


@pytest.mark.parametrize("kind,code", [("QRY^A19", "200"), ("ORU^R99", "201"), ("ZZZ^Z01", "200")])
def test_unsupported_is_ar_naming_it(kind: str, code: str) -> None:
    msg = f"MSH|^~\\&|X|HOSP|HEARTH|HEARTH|20240102030405||{kind}|C1|P|2.5.1\rPID|1||P1^^^H^MR\r"
    with pytest.raises(Hl7Error) as err:
        map_parsed(parse(msg))
    assert err.value.ack == "AR" and err.value.code == code
    assert kind in err.value.text and err.value.location == "MSH^1^9"
