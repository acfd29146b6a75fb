"""The package layout keeps its shape (docs/architecture.md): arrows point down, no cycles,
small modules, and every package says what it owns.

The import contracts live in pyproject.toml (`[tool.importlinter]`); `.ci/run` also runs
`lint-imports` on its own. The deliberate-breakage tests copy the package and break a copy, so
the contracts are shown to fail, not just to pass.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "listserv"
MAX_LINES = 500
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package and contracts found in `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", "pyproject.toml"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break."""
    shutil.copytree(PACKAGE, tmp_path / "listserv",
                    ignore=shutil.ignore_patterns("__pycache__", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n{line}  # deliberately wrong\n")


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_upward_import_that_closes_a_cycle_breaks_the_layers(copy: Path) -> None:
    # delivery reports to bounces through delivery/feedback.py; importing bounces back would
    # bring the old outbound <-> bounces cycle back.
    add_import(copy / "listserv" / "delivery" / "outbox.py", "import listserv.bounces")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "listserv.delivery is not allowed to import listserv.bounces" in result.stdout


def test_a_cycle_inside_a_package_breaks_the_acyclic_contract(copy: Path) -> None:
    # mail.automatic reads headers with mail.headers; the reverse import makes a cycle that no
    # layer sees, since both modules are in mail/.
    add_import(copy / "listserv" / "mail" / "headers.py", "import listserv.mail.automatic")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "No import cycles between the modules of any package BROKEN" in result.stdout


def test_no_module_is_over_500_lines() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"split these modules (at most {MAX_LINES} lines): {too_long}"


def test_every_package_says_what_it_owns() -> None:
    packages = [init for init in PACKAGE.rglob("__init__.py") if "migrations" not in init.parts]
    assert len(packages) >= 14
    silent = [init.parent.relative_to(ROOT).as_posix() for init in packages
              if not ast.get_docstring(ast.parse(init.read_text()))]
    assert not silent, f"packages without a docstring saying what they own: {silent}"
