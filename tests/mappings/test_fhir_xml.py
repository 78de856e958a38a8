"""mappings/fhir_xml: FHIR R4 XML <-> JSON over every official R4 example, the xml.html rules
(element order, value attributes, primitives' ids and extensions, XHTML, nested resources),
and refusals (not well-formed, DOCTYPE / entities, unknown elements, bad values)."""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from mappings import fhir_xml
from mappings.fhir_xml import FHIR_NS, XHTML_NS, XmlError, from_xml, to_xml
from tests.shared import ROOT, shared_path

F = "{" + FHIR_NS + "}"
EXAMPLES = sorted(shared_path("fhir", "r4-examples").glob("*.json"))


def _canonical_div(node: Any) -> Any:
    """The JSON with each narrative div in canonical XML (C14N 2.0): XHTML is compared as XML,
    not as text (``&quot;`` and ``"`` in text are the same XHTML)."""
    if isinstance(node, dict):
        return {
            k: etree.canonicalize(v) if k == "div" and isinstance(v, str) else _canonical_div(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_canonical_div(v) for v in node]
    return node


# The element order of every type, straight from the R4 StructureDefinitions in ../shared
# (not from the generated model the converter uses).
def _sd_order() -> dict[str, list[str]]:  # "value[x]" keeps its [x]
    defs = shared_path("fhir", "r4-definitions")
    sds = json.loads((defs / "profiles-types.json").read_text())["entry"]
    with gzip.open(defs / "profiles-resources.json.gz", "rt") as fh:
        sds += json.load(fh)["entry"]
    order: dict[str, list[str]] = {}
    for entry in sds:
        sd = entry["resource"]
        if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        for el in sd["snapshot"]["element"][1:]:
            parent, name = el["path"].rsplit(".", 1)
            order.setdefault(parent, []).append(name)
    return order


ORDER = _sd_order()


def _check_order(el: etree._Element, path: str, types: dict[str, str]) -> None:
    """Each element's children come in the StructureDefinition's order (R4 xml.html)."""
    names = ORDER[path]
    last = -1
    for child in el:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        index = next(
            i
            for i, n in enumerate(names)
            if local == n
            or (n.endswith("[x]") and local.startswith(n[:-3]) and local[len(n) - 3].isupper())
        )
        assert index >= last, f"{path}: <{local}> after a later element"
        last = index
        child_path = f"{path}.{names[index].removesuffix('[x]')}"
        if child_path in ORDER:  # a backbone element
            _check_order(child, child_path, types)
        elif (
            len(child)
            and isinstance(child[0].tag, str)
            and etree.QName(child[0]).localname[0].isupper()
        ):
            inner = child[0]  # a resource in contained, Bundle.entry.resource, ...
            _check_order(inner, etree.QName(inner).localname, types)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_official_example_round_trips(path: Path) -> None:
    """JSON -> XML -> JSON gives the example back, for all 604 R4 examples; the XML's root is
    the resource type in the FHIR namespace and backbone elements follow the definitions' order."""
    resource = json.loads(path.read_text())
    xml = to_xml(resource)
    root = etree.fromstring(xml)
    assert root.tag == F + resource["resourceType"]
    _check_order(root, resource["resourceType"], {})
    assert _canonical_div(from_xml(xml)) == _canonical_div(resource)


def test_the_examples_are_all_there() -> None:
    assert len(EXAMPLES) == 604


def test_xml_per_spec() -> None:
    """The R4 xml.html example shapes: value attributes, a primitive's id and extensions,
    ``Element.id`` and ``Extension.url`` as attributes, choice names, XHTML, order."""
    resource = {
        "resourceType": "Patient",
        "active": True,  # written after identifier, whatever the key order here
        "identifier": [{"id": "i1", "system": "urn:x", "value": "1"}],
        "id": "p1",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jim</p></div>',
        },
        "birthDate": "1974-12-25",
        "_birthDate": {
            "id": "bd",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1974-12-25T14:35:45-05:00",
                }
            ],
        },
        "name": [{"given": ["Peter", "James"], "_given": [None, {"id": "g2"}]}],
        "multipleBirthInteger": 2,
    }
    root = etree.fromstring(to_xml(resource))
    names = [etree.QName(c).localname for c in root]
    assert names == [
        "id",
        "text",
        "identifier",
        "active",
        "name",
        "birthDate",
        "multipleBirthInteger",
    ]
    assert root.find(F + "id").get("value") == "p1"
    assert root.find(F + "active").get("value") == "true"
    assert root.find(F + "identifier").get("id") == "i1"
    div = root.find(F + "text").find("{" + XHTML_NS + "}div")
    assert div is not None and div.find("{" + XHTML_NS + "}p").text == "Jim"
    bd = root.find(F + "birthDate")
    assert bd.get("value") == "1974-12-25" and bd.get("id") == "bd"
    ext = bd.find(F + "extension")
    assert ext.get("url").endswith("patient-birthTime")
    assert ext.find(F + "valueDateTime").get("value") == "1974-12-25T14:35:45-05:00"
    given = root.find(F + "name").findall(F + "given")
    assert [g.get("value") for g in given] == ["Peter", "James"]
    assert given[0].get("id") is None and given[1].get("id") == "g2"
    assert root.find(F + "multipleBirthInteger").get("value") == "2"
    back = from_xml(to_xml(resource))
    assert back == resource


def test_reads_xml_as_published() -> None:
    """An R4 XML document as the spec publishes them: declaration, xsi:schemaLocation, comments,
    whitespace, a primitive with only an extension, nested resources in a Bundle."""
    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://hl7.org/fhir ../../schema/bundle.xsd">
  <!-- a comment is not content -->
  <type value="transaction"/>
  <entry>
    <fullUrl value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/>
    <resource>
      <Observation>
        <contained>
          <Patient><id value="p"/></Patient>
        </contained>
        <status value="final"/>
        <code><text value="weight"/></code>
        <subject><reference value="#p"/></subject>
        <valueQuantity><value value="67.50"/><unit value="kg"/></valueQuantity>
        <note><text><extension url="http://example.org/absent"><valueCode value="unknown"/></extension></text></note>
      </Observation>
    </resource>
    <request><method value="POST"/><url value="Observation"/></request>
  </entry>
</Bundle>"""
    assert from_xml(xml) == {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {
                    "resourceType": "Observation",
                    "contained": [{"resourceType": "Patient", "id": "p"}],
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": "#p"},
                    "valueQuantity": {"value": 67.5, "unit": "kg"},
                    "note": [
                        {
                            "_text": {
                                "extension": [
                                    {"url": "http://example.org/absent", "valueCode": "unknown"}
                                ]
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<Patient xmlns='http://hl7.org/fhir'", "not well-formed"),
        (b"<Patient><id value='1'/></Patient>", "not in the FHIR namespace"),
        (b"<Banana xmlns='http://hl7.org/fhir'/>", "not an R4 resource type"),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><colour value='x'/></Patient>",
            "no element <colour>",
        ),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><active value='yes'/></Patient>",
            "not true or false",
        ),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><active>true</active></Patient>",
            "value attribute",
        ),
        (b"<Patient xmlns='http://hl7.org/fhir'><active/></Patient>", "value attribute"),
        (b"<Patient xmlns='http://hl7.org/fhir'><gender value=''/></Patient>", "empty value"),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><active value='true'/><active value='true'/></Patient>",
            "only once",
        ),
        (
            b"<Observation xmlns='http://hl7.org/fhir'><valueString value='a'/><valueBoolean value='true'/></Observation>",
            "more than one of value",
        ),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><multipleBirthInteger value='1.5'/></Patient>",
            "not an integer",
        ),
        (b"<Patient xmlns='http://hl7.org/fhir' colour='x'/>", "unexpected attribute"),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><text><status value='generated'/><div>x</div></text></Patient>",
            "in the XHTML namespace",
        ),
    ],
)
def test_refuses_what_is_not_fhir_xml(xml: bytes, message: str) -> None:
    with pytest.raises(XmlError, match=message):
        from_xml(xml)


def test_the_error_names_the_place() -> None:
    xml = b"<Patient xmlns='http://hl7.org/fhir'><name><given value='a'/><given value='b'><x/></given></name></Patient>"
    with pytest.raises(XmlError) as err:
        from_xml(xml)
    assert err.value.location == "Patient.name[0].given[1]"


def test_no_entities_no_dtd_no_network(tmp_path: Path) -> None:
    """Billion laughs, an external entity (XXE) and an external DTD are all refused; nothing is
    expanded or read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{"&lol{};".format(i - 1 if i > 1 else "") * 10}">'.encode()
            for i in range(1, 10)
        )
        + b']><Patient xmlns="http://hl7.org/fhir"><id value="&lol9;"/></Patient>'
    )
    xxe = (
        f'<!DOCTYPE p [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<Patient xmlns="http://hl7.org/fhir"><name><text value="&xxe;"/></name></Patient>'
    ).encode()
    external_dtd = (
        f'<!DOCTYPE Patient SYSTEM "file://{secret}"><Patient xmlns="http://hl7.org/fhir"/>'
    ).encode()
    for doc in (laughs, xxe, external_dtd):
        with pytest.raises(XmlError) as err:
            from_xml(doc)
        assert "SECRET" not in str(err.value)


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Banana"}, "not an R4 resource type"),
        ({"resourceType": "Patient", "colour": "red"}, "no element 'colour'"),
        ({"resourceType": "Patient", "active": "yes"}, "true or false"),
        ({"resourceType": "Patient", "name": [{"text": "a\x01b"}]}, "character XML cannot carry"),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": "<div>unclosed"}},
            "not well-formed XHTML",
        ),
    ],
)
def test_refuses_json_it_cannot_write(resource: dict, message: str) -> None:
    with pytest.raises(XmlError, match=message):
        to_xml(resource)


def test_model_covers_every_r4_resource_type() -> None:
    listed = ROOT / "resources" / "data" / "r4-resource-types.txt"
    lines = [s.strip() for s in listed.read_text().splitlines()]
    r4 = {s for s in lines if s and not s.startswith("#")}
    assert len(r4) == 146 and fhir_xml.resource_types() == r4


# -- the official XML: 603 examples published in both XML and JSON by one R4 4.0.1 build -------
# (tests/data/README.md). Narratives are compared as rendered XHTML (comments dropped, runs of
# whitespace in text and attributes collapsed): the build's JSON and XML differ there, in six
# examples, in nothing else.
OFFICIAL = ROOT / "tests" / "data" / "r4-examples-xml-json.tar.xz"


def _official_pairs() -> dict[str, tuple[bytes, bytes]]:
    files: dict[str, bytes] = {}
    with tarfile.open(OFFICIAL, "r:xz") as tar:
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            if fh is not None:
                files[member.name] = fh.read()
    names = sorted(n[:-4] for n in files if n.endswith(".xml"))
    return {n: (files[n + ".xml"], files[n + ".json"]) for n in names}


PAIRS = _official_pairs()


def _rendered(div: str) -> str:
    el = etree.fromstring(div.encode("utf-8"))
    for comment in el.xpath("//comment()"):
        parent, prev = comment.getparent(), comment.getprevious()
        if comment.tail:
            if prev is not None:
                prev.tail = (prev.tail or "") + comment.tail
            else:
                parent.text = (parent.text or "") + comment.tail
        parent.remove(comment)
    for node in el.iter():
        for name, value in node.attrib.items():
            node.set(name, re.sub(r"\s+", " ", value).strip())
        for side in ("text", "tail"):
            value = getattr(node, side)
            if value is not None:
                setattr(node, side, re.sub(r"\s+", " ", value).strip() or None)
    return etree.canonicalize(etree.tostring(el, encoding="unicode"))


def _rendered_divs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _rendered(v) if k == "div" and isinstance(v, str) else _rendered_divs(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rendered_divs(v) for v in node]
    return node


def _structure(el: etree._Element, out: list) -> list:
    """Elements, their attributes and values in document order, narratives left out."""
    attrs = tuple(
        sorted((k, v) for k, v in el.attrib.items() if not k.startswith("{http://www.w3"))
    )
    out.append((el.tag, attrs))
    if el.tag != "{" + XHTML_NS + "}div":
        for child in el:
            if isinstance(child.tag, str):
                _structure(child, out)
    out.append("/")
    return out


def test_the_official_pairs_are_there() -> None:
    assert len(PAIRS) == 603
    assert set(PAIRS) <= {p.stem for p in EXAMPLES}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_official_xml_reads_as_the_official_json(name: str) -> None:
    xml, official_json = PAIRS[name]
    assert _rendered_divs(from_xml(xml)) == _rendered_divs(json.loads(official_json))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_official_json_writes_as_the_official_xml(name: str) -> None:
    """Outside narratives, the XML written from the official JSON has the official XML's
    elements in its order, with the same attributes and values (decimals keep their precision
    when the JSON is read with Decimal: ``12500.00``)."""
    xml, official_json = PAIRS[name]
    parser = etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True)
    ours = to_xml(json.loads(official_json, parse_float=Decimal))
    assert _structure(etree.fromstring(ours, parser), []) == _structure(
        etree.fromstring(xml, parser), []
    )


def test_values_survive_escaping() -> None:
    """Markup characters and white space in values come back as they were (XML would normalise
    a raw line feed or tab in an attribute to a space)."""
    text = 'a "quoted" <b>&amp;</b>\n\ttabbed\r\nline \u00e9\U0001f600'
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "note": [{"text": text}],
        "extension": [{"url": 'http://x/"<&>', "valueString": text}],
    }
    xml = to_xml(resource)
    assert from_xml(xml) == resource
    assert from_xml(to_xml(resource, pretty=True)) == resource


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Patient", "name": [{"text": "\ud800"}]}, "character XML cannot carry"),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {},
                "valueDecimal": float("nan"),
            },
            "no element",  # valueDecimal is not an Observation choice
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {},
                "valueQuantity": {"value": float("inf")},
            },
            "finite",
        ),
    ],
)
def test_refuses_values_xml_cannot_hold(resource: dict, message: str) -> None:
    with pytest.raises(XmlError, match=message):
        to_xml(resource)
