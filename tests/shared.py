"""Where the test data from outside the project lives (``../shared`` beside the checkout).

A test that needs a file fails loudly when it is missing; it never skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"test data missing: {path} (expected ../shared beside the checkout)"
        )
    return path


def json_places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) inside a JSON document: where a fuzz test may change something."""
    out: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            out.extend(json_places(value))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((node, index))
            out.extend(json_places(value))
    return out
