"""The people, organisations and places a message names, as resources of their own, after the
V2-to-FHIR IG data type maps XCN[Practitioner], XON[Organization] and PL[Location]:

- XCN → Practitioner: XCN.1 (with XCN.9 assigning authority) → identifier, XCN.2-6 → name,
  XCN.21 → qualification text. Only an XCN with an id becomes a resource (a conditional create
  on the identifier, so each practitioner is stored once across messages); a name alone stays a
  display on the reference.
- XON → Organization: XON.10 (XON.3 in older versions, with XON.6 authority) → identifier,
  XON.1 → name. Without an id, a display only.
- PL → Location: PL.1 point of care, PL.2 room, PL.3 bed, PL.4 facility, PL.7 building, PL.8
  floor → name (the parts joined) and physicalType of the most specific part; the identifier is
  PL.10 when given, else the joined parts in the facility's namespace (a location has no other
  key in v2). A conditional create on it.

Entries are shared within a message (``Parties``): the same practitioner named in PV1-7 and
OBX-16 is one entry. Pure functions: no I/O.
"""

from __future__ import annotations

from urllib.parse import quote

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Composite
from mappings.hl7v2.mapping import MapContext, entry, search_token

LOCATION_SYSTEM = "urn:hearth:hl7v2:location:"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"


class Parties:
    """The Practitioner / Organization / Location entries of one message, by their search key."""

    def __init__(self, ctx: MapContext) -> None:
        self.ctx = ctx
        self.entries: list[dict] = []
        self._urls: dict[str, str] = {}

    def forget(self, kept: set[str]) -> None:
        self._urls = {k: u for k, u in self._urls.items() if u in kept}

    def _add(self, res_type: str, resource: dict, ident: dict) -> str:
        key = f"{res_type}?identifier=" + search_token(ident.get("system"), ident["value"])
        if key in self._urls:
            return self._urls[key]
        url = self.ctx.full_url()
        self._urls[key] = url
        query = key.split("?", 1)[1]
        self.entries.append(entry(url, resource, "POST", res_type, if_none_exist=query))
        return url

    def practitioner(self, c: Composite | None) -> dict | None:
        """A Reference to the XCN's Practitioner (a display only when it has no id)."""
        if c is None:
            return None
        ref = dt.xcn_reference(c, self.ctx.default_system)
        if ref is None:
            return None
        ident = ref.get("identifier")
        if ident is None:
            return {"display": ref["display"]} if "display" in ref else None
        resource: dict = {"resourceType": "Practitioner", "identifier": [ident]}
        name = dt.xpn(_xcn_as_xpn(c))
        if name:
            resource["name"] = [name]
        url = self._add("Practitioner", resource, ident)
        out = {"reference": url}
        if "display" in ref:
            out["display"] = ref["display"]
        return out

    def practitioner_from_logical(self, ref: dict) -> dict:
        """A logical Reference(Practitioner) (``dt.xcn_reference``) turned into a reference to a
        Practitioner resource when it carries an identifier."""
        ident = ref.get("identifier")
        if ref.get("type") != "Practitioner" or not isinstance(ident, dict):
            return ref
        resource: dict = {"resourceType": "Practitioner", "identifier": [ident]}
        if ref.get("display"):
            resource["name"] = [{"text": ref["display"]}]
        out = {"reference": self._add("Practitioner", resource, ident)}
        if ref.get("display"):
            out["display"] = ref["display"]
        return out

    def organization(self, c: Composite | None) -> dict | None:
        if c is None:
            return None
        name = c.c(1)
        value = c.c(10) or c.c(3)
        if not value:
            return {"display": name} if name else None
        system = dt.hd_system(c.c(6, 1), c.c(6, 2), c.c(6, 3)) or self.ctx.default_system
        ident: dict = {"value": value}
        if system:
            ident["system"] = system
        resource: dict = {"resourceType": "Organization", "identifier": [ident]}
        if name:
            resource["name"] = name
        out = {"reference": self._add("Organization", resource, ident)}
        if name:
            out["display"] = name
        return out

    def location(self, c: Composite | None) -> dict | None:
        if c is None:
            return None
        parts = [c.c(1), c.c(2), c.c(3), c.c(4, 1), c.c(7), c.c(8), c.c(9)]
        name = ", ".join(p for p in parts if p)
        if not name:
            return None
        facility = c.c(4, 1) or ""
        if c.c(10):
            ident = {"value": c.c(10, 1)}
            system = dt.hd_system(c.c(10, 2), c.c(10, 3), c.c(10, 4)) or self.ctx.default_system
        else:
            ident = {"value": "^".join(c.component_raw(i) for i in (1, 2, 3, 4, 7, 8))}
            ident["value"] = ident["value"].rstrip("^")
            base = self.ctx.default_system or ""
            system = LOCATION_SYSTEM + quote(facility or base, safe="")
        if system:
            ident["system"] = system
        resource: dict = {"resourceType": "Location", "identifier": [ident], "name": name}
        for comp, code, display in ((3, "bd", "Bed"), (2, "ro", "Room"), (1, "wa", "Ward")):
            if c.c(comp):
                resource["physicalType"] = {
                    "coding": [{"system": PHYSICAL_TYPE, "code": code, "display": display}]
                }
                break
        return {"reference": self._add("Location", resource, ident), "display": name}


def _xcn_as_xpn(c: Composite) -> Composite:
    """XCN.2-7 read as an XPN (XPN.1-6): family, given, middle, suffix, prefix, degree."""
    raw = c.raw.split(c._seps.component)  # noqa: SLF001 - same message, shifted by one
    return Composite(c._seps.component.join(raw[1:]), c._seps, c._message)  # noqa: SLF001
