"""Criteria strings of conditional interactions (``If-None-Exist``, ``ifNoneExist``, conditional
references): ``identifier=x|y`` or, as some clients send it, ``Patient?identifier=x|y``."""

from __future__ import annotations

from urllib.parse import parse_qsl

from resources.errors import Invalid


def parse_criteria(text: str) -> list[tuple[str, str]]:
    query = text.split("?", 1)[1] if "?" in text else text
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        raise Invalid(f"{text!r} carries no search parameters")
    return pairs
