"""$validate-code on a CodeSystem and on a ValueSet (FHIR R4 codesystem-operations.html
#validate-code, valueset-operations.html#validate-code): is the code in it, and is the display
(if given) one of its display or designations. The answer is a Parameters resource with
``result``, ``message`` when false (or the display is wrong) and the right ``display``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from terminology.codesystem import CodeSystem
from terminology.expand import Codes


@dataclass(frozen=True)
class Coded:
    """One code to check: from code + system + display, a Coding or a CodeableConcept."""

    system: str | None
    code: str
    display: str | None = None


def _parameters(result: bool, message: str | None, display: str | None) -> dict:
    params: list[dict] = [{"name": "result", "valueBoolean": result}]
    if message:
        params.append({"name": "message", "valueString": message})
    if display:
        params.append({"name": "display", "valueString": display})
    return {"resourceType": "Parameters", "parameter": params}


def _display_ok(given: str | None, display: str | None, designations: list[dict]) -> bool:
    if given is None:
        return True
    names = {display} | {d.get("value") for d in designations}
    return given in names


def in_code_system(cs: CodeSystem, items: Sequence[Coded]) -> dict:
    messages = []
    for item in items:
        if item.system is not None and item.system != cs.url:
            messages.append(f"{item.system} is not the code system {cs.url}")
            continue
        concept = cs.get(item.code)
        if concept is None:
            held = (
                f" (only a fragment of {cs.url} is held here: the code may exist in the full "
                "code system)"
                if cs.content == "fragment"
                else ""
            )
            messages.append(f"code {item.code!r} is not in the code system {cs.url}{held}")
            continue
        if not _display_ok(item.display, concept.display, concept.designations):
            return _parameters(
                False,
                f"the display {item.display!r} is not a display of {item.code!r} "
                f"(expected {concept.display!r})",
                concept.display,
            )
        return _parameters(True, None, concept.display)
    return _parameters(False, "; ".join(messages) or "no code given", None)


def in_value_set(codes: Codes, url: str, items: Sequence[Coded]) -> dict:
    messages = []
    for item in items:
        if item.system is not None:
            entry = codes.get((item.system, item.code))
        else:  # code alone: it must be unambiguous in the value set
            found = [e for (s, c), e in codes.items() if c == item.code]
            entry = found[0] if len(found) == 1 else None
        if entry is None:
            named = f"{item.system}|{item.code}" if item.system else repr(item.code)
            messages.append(f"the code {named} is not in the value set {url}")
            continue
        if not _display_ok(item.display, entry.display, entry.designations):
            return _parameters(
                False,
                f"the display {item.display!r} is not a display of {item.code!r} "
                f"(expected {entry.display!r})",
                entry.display,
            )
        return _parameters(True, None, entry.display)
    return _parameters(False, "; ".join(messages) or "no code given", None)
