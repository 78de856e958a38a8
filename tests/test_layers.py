"""The dependency direction of the packages holds (scripts/check_layers.py)."""

import subprocess
import sys

from tests.shared import ROOT


def test_no_upward_imports():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
