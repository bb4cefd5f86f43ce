"""The layering of docs/architecture.md, checked by import-linter contracts in pyproject.toml."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import heptathlon.bench

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
CORE_CONTRACT = next(c for c in CONFIG["contracts"] if c["name"].startswith("The core imports nothing"))
SHELL = ("heptathlon.bench.app", "heptathlon.bench.cli")


def test_import_linter_contracts_are_kept():
    p = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken." in p.stdout


def _covered(module: str, listed: list[str]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in listed)


def test_every_core_module_is_under_the_core_contract():
    listed = CORE_CONTRACT["source_modules"]
    core = [m.name for m in pkgutil.walk_packages(heptathlon.bench.__path__, "heptathlon.bench.")
            if not _covered(m.name, list(SHELL))]
    assert core, "found no core modules: is heptathlon.bench installed?"
    missing = [m for m in core if not _covered(m, listed)]
    assert not missing, f"add these core modules to the core contract in pyproject.toml: {missing}"


def test_the_core_contract_forbids_every_outer_layer():
    assert set(CORE_CONTRACT["forbidden_modules"]) == {"heptathlon.runners", "heptathlon.db", "heptathlon.dashboard",
                                                       *SHELL}
