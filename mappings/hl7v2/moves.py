"""ADT account and visit merges, moves and identifier changes (HL7 v2.5.1 3.3.41-3.3.51, the MRG
segment 3.4.9) → transaction entries. The V2-to-FHIR IG has no message map for these events;
its one MRG map is MRG[Account] (MRG-3 → Account.identifier), which Hearth follows for the
account, and FHIR R4 gives the rest: ``Linkage`` (linkage.html: "several instances … that
represent the same real-world entity", one item ``source``, the others ``historical``) for a
merged Account or Encounter, which have no ``link`` of their own as Patient does, and a
conditional FHIRPath Patch for every change of a stored record, so nothing is overwritten
that the message does not name:

| Event | What the message names | FHIR |
|---|---|---|
| A41 merge account | MRG-3 prior account, PID-18 surviving account | surviving Account (PID-18) upserted; prior Account patched ``inactive``; Linkage source = survivor, historical = prior |
| A42 merge visit | MRG-5 prior visit, PV1-19 surviving visit | surviving Encounter (PV1) upserted; Linkage source = survivor, historical = prior (its content kept) |
| A43 move patient information | MRG-1 source patient; MRG-3 account and / or MRG-5 visit | each named record's ``subject`` re-pointed to the PID patient |
| A44 move account information | MRG-1 source patient; MRG-3 (else PID-18) account | the Account's ``subject`` re-pointed to the PID patient |
| A45 move visit information | MRG-1 source patient; MRG-5 (else PV1-19) visit; PID-18 new account | the Encounter's ``subject`` (and ``account``, to PID-18's Account) re-pointed |
| A49 change patient account number | MRG-3 old, PID-18 new | the Account's old identifier kept with ``use`` old, the new one added |
| A50 change visit number | MRG-5 old, PV1-19 new | the Encounter's identifiers, as A49 |
| A51 change alternate visit ID | PV1-19 the visit; MRG-6 old, PV1-50 new | the Encounter's identifiers, as A49 |

Every record acted on must exist: the conditional patch (or the Linkage's conditional
reference) fails the transaction when it does not, and ``MapContext.require`` lists it so that
the service can then answer AE 204 (unknown key identifier) at its MRG field. MRG-1 (the
source patient of a move) is not looked up: the moved record is named by its own identifier. Sent again, a message changes nothing: the patches find the record by its old or new
identifier and remove what they add before adding it; the Linkage's id is derived from the two
records' keys. Pure functions: no I/O.
"""

from __future__ import annotations

import uuid

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2 import pv1 as pv1_map
from mappings.hl7v2.er7 import Message, Segment
from mappings.hl7v2.errors import Hl7Error, missing
from mappings.hl7v2.mapping import MapContext, search_token

MERGES = {"A41": "Account", "A42": "Encounter"}
MOVES = frozenset({"A43", "A44", "A45"})
CHANGES = frozenset({"A49", "A50", "A51"})
EVENTS = frozenset(MERGES) | MOVES | CHANGES
LINKAGE_NAMESPACE = uuid.UUID("3f0b6b1e-5f0c-4a52-9d3e-1a4f2c6e7b90")


def _part(name: str, **value: object) -> dict:
    return {"name": name, **value}


def _op(kind: str, path: str, name: str | None = None, **value: object) -> dict:
    parts = [_part("type", valueCode=kind), _part("path", valueString=path)]
    if name is not None:
        parts.append(_part("name", valueString=name))
    if value:
        parts.append(_part("value", **value))
    return {"name": "operation", "part": parts}


def _patch(res_type: str, query: str, operations: list[dict]) -> dict:
    return {
        "resource": {"resourceType": "Parameters", "parameter": operations},
        "request": {"method": "PATCH", "url": f"{res_type}?{query}"},
    }


def _literal(text: str) -> str:
    """A FHIRPath string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(seg: Segment | None, n: int, ctx: MapContext) -> dict | None:
    first = seg.first(n) if seg is not None else None
    return dt.cx(first, ctx.default_system, seg.where(n)) if first and seg else None


def _query(*idents: dict) -> str:
    """``identifier=a,b``: the record known by any of them."""
    tokens = [search_token(i.get("system"), i["value"]) for i in idents]
    return "identifier=" + ",".join(dict.fromkeys(tokens))


def _same(a: dict, b: dict) -> bool:
    return (a.get("system"), a["value"]) == (b.get("system"), b["value"])


def _typed(ident: dict, code: str) -> dict:
    out = {k: v for k, v in ident.items() if k != "type"}
    out["type"] = dt.identifier_type(code)
    return out


def _without(res_type: str, ident: dict) -> dict:
    system = ident.get("system")
    test = f"value = {_literal(ident['value'])}"
    if system:
        test = f"system = {_literal(system)} and {test}"
    return _op("delete", f"{res_type}.identifier.where({test})")


def _change_identifier(res_type: str, old: dict, new: dict, code: str) -> list[dict]:
    """The record keeps its old identifier as ``use`` old and takes the new one; removing
    both first makes the patch the same when applied again."""
    return [
        _without(res_type, old),
        _without(res_type, new),
        _op("add", res_type, "identifier", valueIdentifier={**_typed(old, code), "use": "old"}),
        _op("add", res_type, "identifier", valueIdentifier=_typed(new, code)),
    ]


def _repoint(res_type: str, patient_url: str) -> list[dict]:
    return [
        _op("delete", f"{res_type}.subject"),
        _op("add", res_type, "subject", valueReference={"reference": patient_url}),
    ]


def _linkage(res_type: str, survivor: str, survivor_key: str, prior_key: str) -> dict:
    key = f"{res_type}|{survivor_key}|{prior_key}"
    res_id = str(uuid.uuid5(LINKAGE_NAMESPACE, key))
    resource = {
        "resourceType": "Linkage",
        "id": res_id,
        "active": True,
        "item": [
            {"type": "source", "resource": {"reference": survivor}},
            {"type": "historical", "resource": {"reference": f"{res_type}?{prior_key}"}},
        ],
    }
    return {
        "fullUrl": f"urn:uuid:{res_id}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"Linkage/{res_id}"},
    }


def skips(message: Message) -> tuple[bool, bool]:
    """(map PV1 as the visit, map PID-18 as an Account) for the event: not where the message
    patches that record (a transaction touches a resource once)."""
    event = message.message_type[1]
    visit = event in ("A41", "A42", "A49")
    account = event in ("A41", "A42", "A45", "A50", "A51")
    if event == "A43":  # moving the MRG-3 account: PID-18 names it too
        mrg = message.one("MRG")
        account = mrg is None or not mrg.value(3)
    return visit, account


def entries(
    message: Message,
    ctx: MapContext,
    patient_url: str,
    urls: dict[str, str],
) -> list[dict]:
    """The merge / move / change entries of the message; ``urls`` has the fullUrls of the
    surviving ``Account`` (PID-18) and ``Encounter`` (PV1) the caller wrote, when it did."""
    event = message.message_type[1]
    mrg = message.one("MRG")
    if mrg is None:
        raise missing("MRG", f"the MRG segment ({event} names the record it acts on there)")
    pid = message.one("PID")
    pv1 = message.one("PV1")
    out: list[dict] = []
    if event == "A41":
        prior = _identifier(mrg, 3, ctx)
        survivor = _identifier(pid, 18, ctx)
        if prior is None:
            raise missing("MRG^1^3", "prior patient account number")
        if survivor is None or "Account" not in urls:
            raise missing("PID^1^18", "the surviving patient account number")
        _distinct(prior, survivor, "MRG^1^3", "account")
        key = _query(prior)
        ctx.require("Account", key, "MRG^1^3", "the prior account (MRG-3)")
        out.append(_patch("Account", key, [_op("replace", "Account.status", valueCode="inactive")]))
        out.append(_linkage("Account", urls["Account"], _query(survivor), key))
    elif event == "A42":
        prior = _identifier(mrg, 5, ctx)
        survivor = pv1_map.visit_identifier(pv1, ctx) if pv1 is not None else None
        if prior is None:
            raise missing("MRG^1^5", "prior visit number")
        if survivor is None or "Encounter" not in urls:
            raise missing("PV1^1^19", "the surviving visit number")
        _distinct(prior, survivor, "MRG^1^5", "visit")
        key = _query(prior)
        ctx.require("Encounter", key, "MRG^1^5", "the prior visit (MRG-5)")
        out.append(_linkage("Encounter", urls["Encounter"], _query(survivor), key))
    elif event in MOVES:
        account = _identifier(mrg, 3, ctx)
        visit = _identifier(mrg, 5, ctx)
        account_at, visit_at = "MRG^1^3", "MRG^1^5"
        if event == "A44":
            if account is None:
                account, account_at = _identifier(pid, 18, ctx), "PID^1^18"
            if account is None:
                raise missing("MRG^1^3", "the account to move (MRG-3, PID-18)")
            visit = None
        elif event == "A45":
            if visit is None and pv1 is not None:
                visit, visit_at = pv1_map.visit_identifier(pv1, ctx), "PV1^1^19"
            if visit is None:
                raise missing("MRG^1^5", "the visit to move (MRG-5, PV1-19)")
            account = None
        elif account is None and visit is None:
            raise Hl7Error(
                "AE",
                "101",
                "A43 (move patient information) names nothing to move: MRG-3 (account) or "
                "MRG-5 (visit)",
                location="MRG^1^3",
            )
        if account is not None:
            key = _query(account)
            ctx.require("Account", key, account_at, "the account to move")
            out.append(_patch("Account", key, _repoint("Account", patient_url)))
        if visit is not None:
            key = _query(visit)
            ctx.require("Encounter", key, visit_at, "the visit to move")
            ops = _repoint("Encounter", patient_url)
            if "Account" in urls:
                ops += [
                    _op("delete", "Encounter.account"),
                    _op(
                        "add", "Encounter", "account", valueReference={"reference": urls["Account"]}
                    ),
                ]
            out.append(_patch("Encounter", key, ops))
    else:  # A49, A50, A51: identifier changes
        if event == "A49":
            res_type, code, old_at, new_seg, new_n = "Account", "AN", 3, pid, 18
        elif event == "A50":
            res_type, code, old_at, new_seg, new_n = "Encounter", "VN", 5, pv1, 19
        else:
            res_type, code, old_at, new_seg, new_n = "Encounter", "VN", 6, pv1, 50
        old = _identifier(mrg, old_at, ctx)
        new = _identifier(new_seg, new_n, ctx)
        if old is None:
            raise missing(f"MRG^1^{old_at}", "the identifier being changed")
        if new is None:
            raise missing(f"{'PID' if new_n == 18 else 'PV1'}^1^{new_n}", "the new identifier")
        _distinct(old, new, f"MRG^1^{old_at}", "identifier")
        key, at = _query(old, new), f"MRG^1^{old_at}"
        if event == "A51":  # the visit is PV1-19; its alternate id may not be stored yet
            visit = pv1_map.visit_identifier(pv1, ctx) if pv1 is not None else None
            if visit is None:
                raise missing("PV1^1^19", "the visit whose alternate id changes")
            key, at = _query(visit), "PV1^1^19"
        ctx.require(res_type, key, at, f"the {res_type.lower()} to change")
        out.append(_patch(res_type, key, _change_identifier(res_type, old, new, code)))
    return out


def _distinct(prior: dict, survivor: dict, location: str, what: str) -> None:
    if _same(prior, survivor):
        raise Hl7Error("AE", "101", f"the prior {what} is the surviving one", location=location)
