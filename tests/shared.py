"""Where the test data from outside the project lives (``../shared`` beside the checkout).

A test that needs a file fails loudly when it is missing; it never skips.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"test data missing: {path} (expected ../shared beside the checkout)"
        )
    return path
