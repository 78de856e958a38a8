"""FHIR R4 XML to and from FHIR JSON (R4 xml.html, json.html), driven by the R4 StructureDefinitions.

Pure functions over their arguments. The element order and types of every resource, datatype and
backbone element come from the R4 (4.0.1) StructureDefinitions' snapshots, read once from
``mappings/data/fhir-xml-r4.json.gz`` (written by ``scripts/gen_fhir_xml_model.py``; see
``mappings/data/README.md``). What the conversion follows (xml.html):

- the root element is the resource type, in the namespace ``http://hl7.org/fhir``; elements come
  in the order of the definitions, whatever the order of the JSON object's keys;
- a primitive is an element with a ``value`` attribute; its ``id`` is an attribute and its
  extensions are child elements (JSON's ``_name`` object, and ``_name`` arrays aligned with
  ``null`` for repeating primitives);
- ``Element.id`` and ``Extension.url`` are attributes (``representation: xmlAttr``);
- choice elements (``value[x]``) are named by their type (``valueQuantity``);
- ``Narrative.div`` is XHTML: an element ``div`` in the XHTML namespace in XML, the same markup as a
  string in JSON;
- a resource inside a resource (``contained``, ``Bundle.entry.resource``,
  ``Parameters.parameter.resource``) is an element named by its type inside the element named by
  the property;
- numbers and booleans become JSON numbers and booleans (``decimal`` keeps an integer value an
  integer); XML comments are dropped.

XML input is parsed without a DTD: a document with a DOCTYPE (entities, external references) is
refused, no entity is resolved and nothing is fetched (no XXE, no entity expansion).
:class:`XmlError` names what is wrong and where (an XPath-like location).
"""

from __future__ import annotations

import gzip
import html.entities
import json
import math
import re
import threading
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources as importlib_resources
from typing import Any

from lxml import etree

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = "{" + FHIR_NS + "}"
_X = "{" + XHTML_NS + "}"

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


class XmlError(ValueError):
    """The XML (or the JSON to write as XML) is not a FHIR R4 resource: ``location`` is where,
    as a FHIRPath-like path (``Patient.name[0].given[1]``; empty for the document itself)."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.message = message
        self.location = location


@dataclass(frozen=True)
class Element:
    """One element of a type, from the StructureDefinition snapshot."""

    name: str
    types: tuple[str, ...]
    choice: bool
    repeats: bool
    attribute: bool


@dataclass(frozen=True)
class Prop:
    """One XML/JSON property name of a type: its element, its type, its place in the order, and
    how it is written (attribute, primitive, xhtml, resource, complex)."""

    element: Element
    type: str
    index: int
    kind: str


@dataclass(frozen=True, eq=False)  # hashed by identity (by_xml_name caches on it)
class Model:
    primitives: dict[str, str]  # primitive type -> JSON kind (string, boolean, integer, decimal)
    resources: frozenset[str]
    types: dict[str, tuple[Element, ...]]

    def elements(self, type_name: str) -> tuple[Element, ...]:
        return self.types[type_name]

    @cache  # noqa: B019 - one Model per process
    def by_xml_name(self, type_name: str) -> dict[str, Prop]:
        """XML/JSON property name -> :class:`Prop` for ``type_name``'s elements."""
        out: dict[str, Prop] = {}
        for index, el in enumerate(self.types[type_name]):
            named = (
                [(el.name + t[0].upper() + t[1:], t) for t in el.types]
                if el.choice
                else [(el.name, el.types[0] if el.types else "string")]
            )
            for name, typ in named:
                out[name] = Prop(el, typ, index, self._kind(el, typ))
        return out

    @cache  # noqa: B019 - one Model per process
    def attributes(self, type_name: str) -> frozenset[str]:
        return frozenset(el.name for el in self.types[type_name] if el.attribute)

    def _kind(self, el: Element, typ: str) -> str:
        if el.attribute:
            return "attribute"
        if typ == "xhtml":
            return "xhtml"
        if typ in self.primitives:
            return "primitive"
        if typ == "Resource":
            return "resource"
        return "complex"


@cache
def model() -> Model:
    """The R4 element model (loaded once)."""
    ref = importlib_resources.files("mappings") / "data" / "fhir-xml-r4.json.gz"
    raw = json.loads(gzip.decompress(ref.read_bytes()))
    types = {
        name: tuple(
            Element(n, tuple(ts), bool(choice), bool(repeats), bool(attribute))
            for n, ts, choice, repeats, attribute in elements
        )
        for name, elements in raw["types"].items()
    }
    return Model(raw["primitives"], frozenset(raw["resources"]), types)


def resource_types() -> frozenset[str]:
    return model().resources


# ---------------------------------------------------------------------------------------------
# JSON -> XML


def to_xml(resource: dict, *, pretty: bool = False) -> bytes:
    """A FHIR JSON resource (parsed) as FHIR XML (UTF-8, with an XML declaration).

    Raises :class:`XmlError` for what cannot be written: an unknown resource type, a property
    the type does not have, a value of the wrong JSON kind, XHTML that does not parse.
    The document is written as text (values escaped here, narratives serialised by lxml after
    parsing them); ``pretty`` re-indents it with lxml."""
    parts: list[str] = ["<?xml version='1.0' encoding='UTF-8'?>\n"]
    _write_resource(parts, resource, "", root=True)
    data = "".join(parts).encode("utf-8")
    if pretty:
        tree = etree.fromstring(
            data, etree.XMLParser(remove_blank_text=True, resolve_entities=False)
        )
        return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


# Attribute values: the markup characters, and the white space XML would otherwise normalise
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def _write_resource(parts: list[str], resource: Any, where: str, root: bool = False) -> None:
    if not isinstance(resource, dict):
        raise XmlError("a resource must be a JSON object", where)
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in model().resources:
        raise XmlError(f"{rtype!r} is not an R4 resource type", where)
    xmlns = f' xmlns="{FHIR_NS}"' if root else ""
    _write_element(parts, rtype, resource, rtype, where or rtype, skip="resourceType", xmlns=xmlns)


def _write_element(
    parts: list[str],
    tag: str,
    obj: dict,
    type_name: str,
    where: str,
    skip: str | None = None,
    xmlns: str = "",
) -> None:
    """``<tag ...>`` with ``obj``'s properties as attributes and children, in the type's order."""
    props = model().by_xml_name(type_name)
    found: dict[str, Prop] = {}
    for key in obj:
        if key == "fhir_comments" or key == skip:
            continue
        name = key[1:] if key.startswith("_") else key
        prop = props.get(name)
        if prop is None:
            raise XmlError(f"{type_name} has no element {key!r}", where)
        found[name] = prop
    order = sorted(found.items(), key=lambda item: item[1].index)
    for i in range(1, len(order)):
        if order[i][1].element is order[i - 1][1].element:
            el = order[i][1].element
            raise XmlError(
                f"more than one of {el.name}[x]: {[order[i - 1][0], order[i][0]]}", where
            )
    start = [f"<{tag}{xmlns}"]
    for key, prop in order:
        if prop.kind == "attribute" and obj.get(key) is not None:
            text = _lexical(obj[key], prop.type, f"{where}.{key}")
            start.append(f' {key}="{text.translate(_ATTR_ESCAPES)}"')
    at_start = len(parts)
    parts.append("")  # the start tag, once we know whether the element has children
    for key, prop in order:
        el, typ, kind = prop.element, prop.type, prop.kind
        if kind == "attribute":
            continue
        value = obj.get(key)
        if kind == "primitive":
            _write_primitive(parts, key, value, obj.get("_" + key), typ, el.repeats, where)
            continue
        items = value if el.repeats else [value]
        if not isinstance(items, list):
            raise XmlError("expected an array", f"{where}.{key}")
        for i, item in enumerate(items):
            at = f"{where}.{key}[{i}]" if el.repeats else f"{where}.{key}"
            if kind == "xhtml":
                parts.append(etree.tostring(_xhtml(item, at), encoding="unicode", with_tail=False))
            elif kind == "resource":
                parts.append(f"<{key}>")
                _write_resource(parts, item, at)
                parts.append(f"</{key}>")
            else:
                if not isinstance(item, dict):
                    raise XmlError(f"expected a JSON object ({typ})", at)
                _write_element(parts, key, item, typ, at)
    if len(parts) == at_start + 1:  # no children
        parts[at_start] = "".join(start) + "/>"
    else:
        parts[at_start] = "".join(start) + ">"
        parts.append(f"</{tag}>")


def _write_primitive(
    parts: list[str],
    key: str,
    value: Any,
    ext: Any,
    typ: str,
    repeats: bool,
    parent_where: str,
) -> None:
    if repeats:
        values = value if value is not None else []
        exts = ext if ext is not None else []
        if not isinstance(values, list) or not isinstance(exts, list):
            raise XmlError("expected an array", f"{parent_where}.{key}")
        if values and exts and len(values) != len(exts):
            raise XmlError(f"_{key} and {key} differ in length", f"{parent_where}.{key}")
        n = max(len(values), len(exts))
        pairs = [
            (values[i] if i < len(values) else None, exts[i] if i < len(exts) else None)
            for i in range(n)
        ]
    else:
        pairs = [(value, ext)]
    for i, (v, x) in enumerate(pairs):
        at = f"{parent_where}.{key}[{i}]" if repeats else f"{parent_where}.{key}"
        if v is None and x is None:
            raise XmlError("a primitive has neither a value nor extensions", at)
        start = f"<{key}"
        if x is not None:
            if not isinstance(x, dict):
                raise XmlError(f"_{key} must be a JSON object", at)
            bad = set(x) - {"id", "extension", "fhir_comments"}
            if bad:
                raise XmlError(f"_{key} may hold only id and extension, not {sorted(bad)[0]}", at)
            if x.get("id") is not None:
                start += f' id="{_lexical(x["id"], "string", at).translate(_ATTR_ESCAPES)}"'
        if v is not None:
            start += f' value="{_lexical(v, typ, at).translate(_ATTR_ESCAPES)}"'
        extensions = x.get("extension") if x is not None else None
        if not extensions:
            parts.append(start + "/>")
            continue
        if not isinstance(extensions, list):
            raise XmlError("extension must be an array", at)
        parts.append(start + ">")
        for j, e in enumerate(extensions):
            if not isinstance(e, dict):
                raise XmlError("an extension must be a JSON object", f"{at}.extension[{j}]")
            _write_element(parts, "extension", e, "Extension", f"{at}.extension[{j}]")
        parts.append(f"</{key}>")


def _lexical(value: Any, typ: str, where: str) -> str:
    kind = model().primitives.get(typ, "string")
    if kind == "boolean":
        if not isinstance(value, bool):
            raise XmlError(f"{typ} must be true or false", where)
        return "true" if value else "false"
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise XmlError(f"{typ} must be a JSON integer", where)
        return str(value)
    if kind == "decimal":
        if isinstance(value, Decimal) and value.is_finite():
            return str(value)  # JSON read with parse_float=Decimal keeps the precision: 1.50
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise XmlError(f"{typ} must be a JSON number", where)
        if isinstance(value, float) and not math.isfinite(value):
            raise XmlError(f"{typ} must be a finite number", where)
        return json.dumps(value)
    if not isinstance(value, str):
        raise XmlError(f"{typ} must be a JSON string", where)
    _check_chars(value, where)
    return value


# XML 1.0 Char: no C0 control characters other than tab, line feed and carriage return, no
# lone surrogates (which UTF-8 cannot encode either).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _check_chars(text: str, where: str) -> None:
    if _NOT_XML.search(text):
        raise XmlError("the value holds a character XML cannot carry", where)


# Named character references of HTML that narratives written as HTML carry (``&nbsp;``): not
# XML, so they are read as the characters they name (the five of XML stay as they are).
_NAMED = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_NAMED = frozenset({"amp", "lt", "gt", "quot", "apos"})


def _html_entity(match: re.Match[str]) -> str:
    name = match.group(1)
    code = html.entities.name2codepoint.get(name)
    if name in _XML_NAMED or code is None:
        return match.group(0)
    return f"&#{code};"


def _xhtml(div: Any, where: str) -> etree._Element:
    if not isinstance(div, str):
        raise XmlError("the narrative div must be a string of XHTML", where)
    text = _NAMED.sub(_html_entity, div) if "&" in div else div
    try:
        el = etree.fromstring(text.encode("utf-8"), _parser())
    except (etree.LxmlError, ValueError) as exc:
        raise XmlError(f"the narrative is not well-formed XHTML: {exc}", where) from exc
    if el.tag != _X + "div":
        raise XmlError("the narrative must be a <div> in the XHTML namespace", where)
    if el.getroottree().docinfo.doctype:
        raise XmlError("the narrative may not carry a DOCTYPE", where)
    el.tail = None
    return el


# ---------------------------------------------------------------------------------------------
# XML -> JSON


_local = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser (lxml parsers are not shared between threads).

    No DTD is loaded, no entity resolved, nothing fetched; libxml2's limits on depth and size
    stay on (huge_tree=False). A DOCTYPE is refused after parsing (parse). Comments are kept:
    they are skipped between FHIR elements, and are part of the XHTML inside a narrative."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
        )
    return parser


def parse(data: bytes) -> etree._Element:
    """Parse XML safely (no DTD, no entities, no network); :class:`XmlError` when it cannot."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.LxmlError as exc:
        raise XmlError(f"the body is not well-formed XML: {exc}") from exc
    except ValueError as exc:  # e.g. an encoding declaration on a str
        raise XmlError(f"the body is not XML: {exc}") from exc
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise XmlError("a FHIR XML document may not carry a DOCTYPE (DTDs and entities)")
    return root


def from_xml(data: bytes) -> dict:
    """FHIR XML (bytes) as a FHIR JSON resource (parsed): :class:`XmlError` when the XML is not
    well-formed, has a DOCTYPE, or is not an R4 resource (unknown element, bad value)."""
    return resource_from_element(parse(data), "")


def resource_from_element(el: etree._Element, where: str) -> dict:
    rtype = _fhir_name(el, where)
    if rtype not in model().resources:
        raise XmlError(f"{rtype!r} is not an R4 resource type", where)
    at = where or rtype
    _no_attributes(el, set(), at)
    out: dict[str, Any] = {"resourceType": rtype}
    _read_children(el, rtype, out, at)
    return out


def _fhir_name(el: etree._Element, where: str) -> str:
    if not isinstance(el.tag, str):
        raise XmlError("unexpected XML node", where)
    qn = etree.QName(el)
    if qn.namespace != FHIR_NS:
        raise XmlError(f"element <{qn.localname}> is not in the FHIR namespace {FHIR_NS}", where)
    return qn.localname


_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


def _no_attributes(el: etree._Element, allowed: AbstractSet[str], where: str) -> None:
    """Only the attributes FHIR defines here; ``xsi:schemaLocation`` (as in the official
    examples) is ignored."""
    for name in el.attrib:
        if name not in allowed and not name.startswith(_XSI):
            raise XmlError(f"unexpected attribute {name!r}", where)


_FLEN = len(_F)


def _read_children(el: etree._Element, type_name: str, out: dict, where: str) -> None:
    m = model()
    props = m.by_xml_name(type_name)
    if el.attrib:
        allowed = m.attributes(type_name)
        _no_attributes(el, allowed, where)
        for name in allowed:
            if name in el.attrib:
                out[name] = el.attrib[name]
    if el.text and el.text.strip():
        raise XmlError("unexpected text; FHIR values are in value attributes", where)
    counts: dict[str, int] = {}
    choices: dict[int, str] = {}
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comments and processing instructions carry no FHIR content
        if child.tail and child.tail.strip():
            raise XmlError("unexpected text between elements", where)
        if tag.startswith(_F):
            name = tag[_FLEN:]
        elif tag == _X + "div":  # the one element outside the FHIR namespace: Narrative.div
            name = "div"
        else:
            name = _fhir_name(child, where)  # raises: not in the FHIR namespace
        prop = props.get(name)
        if prop is None or prop.kind == "attribute":
            raise XmlError(f"{type_name} has no element <{name}>", where)
        el_def, typ, kind = prop.element, prop.type, prop.kind
        i = counts.get(name, 0)
        counts[name] = i + 1
        at = f"{where}.{name}[{i}]" if el_def.repeats else f"{where}.{name}"
        if not el_def.repeats and i > 0:
            raise XmlError(f"<{name}> may occur only once", where)
        if el_def.choice:
            if choices.setdefault(prop.index, name) != name:
                raise XmlError(f"more than one of {el_def.name}[x]", where)
        if kind == "primitive":
            value, ext = _read_primitive(child, typ, at)
            if el_def.repeats:
                out.setdefault(name, []).append(value)
                out.setdefault("_" + name, []).append(ext)
            else:
                if value is not None:
                    out[name] = value
                if ext is not None:
                    out["_" + name] = ext
            continue
        if kind == "xhtml":
            item: Any = _read_xhtml(child, at)
        elif kind == "resource":
            _no_attributes(child, set(), at)
            inner = [c for c in child if isinstance(c.tag, str)]
            if len(inner) != 1 or (child.text and child.text.strip()):
                raise XmlError("must hold exactly one resource", at)
            item = resource_from_element(inner[0], at)
        else:
            item = {}
            _read_children(child, typ, item, at)
        if el_def.repeats:
            out.setdefault(name, []).append(item)
        else:
            out[name] = item
    # Repeating primitives: drop an all-null side of the pair of arrays.
    for key in [k for k in out if k.startswith("_") and isinstance(out[k], list)]:
        base = key[1:]
        if all(x is None for x in out[key]):
            del out[key]
        if base in out and all(v is None for v in out[base]):
            del out[base]


_PRIMITIVE_ATTRIBUTES = frozenset({"value", "id"})
_EXTENSION = _F + "extension"


def _read_primitive(el: etree._Element, typ: str, where: str) -> tuple[Any, dict | None]:
    attrib = el.attrib
    if len(attrib) > 1 or (attrib and "value" not in attrib):
        _no_attributes(el, _PRIMITIVE_ATTRIBUTES, where)
    if el.text and el.text.strip():
        raise XmlError("a primitive's value is its value attribute, not text", where)
    raw = attrib.get("value")
    if raw == "":
        raise XmlError("an empty value attribute is not allowed", where)
    value = None if raw is None else _value(raw, typ, where)
    if len(el) == 0 and "id" not in attrib:
        if value is None:
            raise XmlError("a primitive element needs a value attribute or an extension", where)
        return value, None
    ext: dict[str, Any] = {}
    if attrib.get("id") is not None:
        ext["id"] = attrib.get("id")
    extensions: list[dict[str, Any]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tail and child.tail.strip():
            raise XmlError("unexpected text between elements", where)
        if child.tag != _EXTENSION:
            _fhir_name(child, where)  # raises: not in the FHIR namespace
            raise XmlError(
                f"a primitive holds only extensions, not <{etree.QName(child).localname}>", where
            )
        item: dict[str, Any] = {}
        _read_children(child, "Extension", item, f"{where}.extension[{len(extensions)}]")
        extensions.append(item)
    if extensions:
        ext["extension"] = extensions
    if value is None and not extensions:
        raise XmlError("a primitive element needs a value attribute or an extension", where)
    return value, ext or None


def _value(raw: str, typ: str, where: str) -> Any:
    kind = model().primitives.get(typ, "string")
    if kind == "string":
        return raw
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise XmlError(f"{typ} value {raw!r} is not true or false", where)
        return raw == "true"
    if kind == "integer":
        if not _INTEGER.fullmatch(raw):
            raise XmlError(f"{typ} value {raw!r} is not an integer", where)
        return int(raw)
    if kind == "decimal":
        if not _DECIMAL.fullmatch(raw):
            raise XmlError(f"decimal value {raw!r} is not a number", where)
        if _INTEGER.fullmatch(raw):
            return int(raw)
        return float(raw)
    return raw


def _read_xhtml(el: etree._Element, where: str) -> str:
    if el.tag != _X + "div":
        raise XmlError("the narrative must be a <div> in the XHTML namespace", where)
    copy = etree.fromstring(etree.tostring(el), _parser())  # drop the tail and outer namespaces
    etree.cleanup_namespaces(copy)
    return etree.tostring(copy, encoding="unicode", with_tail=False)
