"""The appliance never imports the simulated exchange, nor the package that joins the two.

Only ``appliance.sim`` (the joining: ``up --sim``, the sandbox, the launcher) and the benchmarks
(which measure the exchange itself) may import ``appliance.exchange``; everything else - feed,
strategy, risk, OMS, supervisor, ops, runtime, wire, messages, clock - imports neither it nor
``appliance.sim``. Read from the source (every import, also those inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "appliance"
MAY_JOIN = ("exchange", "sim", "bench")      # top-level parts of appliance/ allowed to import the simulator


def _imports(path: Path, top: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from M import n`` gives M and M.n)."""
    package = ".".join(path.relative_to(top).parts[:-1])          # a module's package, or __init__'s own
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def forbidden_imports(root: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0].removesuffix(".py") in MAY_JOIN:
            continue
        for name in sorted(_imports(path, root.parent)):
            if name.startswith(("appliance.exchange", "appliance.sim")):
                bad.append(f"{path.relative_to(root.parent)} imports {name}")
    return bad


def test_no_part_of_the_appliance_imports_the_simulated_exchange_or_the_sim_package():
    assert forbidden_imports() == []


def test_the_check_sees_a_lazy_and_a_relative_import(tmp_path):
    root = tmp_path / "appliance"
    (root / "supervisor").mkdir(parents=True)
    (root / "supervisor" / "x.py").write_text("def f():\n    from appliance.exchange.config import default_config\n")
    (root / "oms").mkdir()
    (root / "oms" / "y.py").write_text("from ..sim import up\n")
    (root / "sim").mkdir()
    (root / "sim" / "z.py").write_text("import appliance.exchange\n")
    assert forbidden_imports(root) == ["appliance/oms/y.py imports appliance.sim",
                                       "appliance/oms/y.py imports appliance.sim.up",
                                       "appliance/supervisor/x.py imports appliance.exchange.config",
                                       "appliance/supervisor/x.py imports appliance.exchange.config.default_config"]
