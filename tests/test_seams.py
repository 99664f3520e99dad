"""The seams between modules that the layout promises (README, "Layout")."""

from __future__ import annotations

import subprocess
import sys


def test_matching_needs_neither_the_config_models_nor_pydantic() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, monitor.match; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "monitor.match" in loaded
    assert "monitor.config" not in loaded
    assert not [name for name in loaded if name.split(".")[0] == "pydantic"]
