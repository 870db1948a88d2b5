"""The rooms' layering, as contracts in pyproject.toml checked by import-linter:
the edge never imports the hub or training, the hub never imports the edge or
training, shared imports no service (indirect imports included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.is_file(), "lint-imports not found: install the dev extra (pip install -e '.[dev]')"
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout, result.stdout


def test_the_torch_reference_backend_is_an_entry_point_the_edge_loads_on_demand() -> None:
    """The edge lists the torch backend without importing training (it is imported
    only when a config asks for it)."""
    code = ("import sys; from edge_agent.backends import registered_backends; "
            "print(registered_backends(), any(m.startswith('training') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.stdout.split("] ")[1].strip() == "False", result.stdout + result.stderr
    assert "'torch'" in result.stdout and "'openvino'" in result.stdout
