"""The import rules of ARCHITECTURE.md, checked on every module of the package.

Each rule is a "never" arrow between packages. A violation that exists today and has a planned
fix is listed in ``KNOWN`` with the reason; the test fails on any other violation, and also when a
listed one is gone (take it off the list: the list only shrinks).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "appliance"

TRADING = ("feed", "strategy", "risk", "oms")          # the four processes of the order path
HOT_PATH = TRADING + ("runtime", "messages", "wire")    # what the agents of the order path run on
EVENT_LOOP_AND_METRICS = ("asyncio", "uvloop", "prometheus_client", "nats")
CONFIG_LOADERS = {                                       # modules that read YAML before an agent starts
    "runtime/layout.py", "risk/limits.py", "strategy/loader.py",
}
LEAVES = ("wire", "config", "command_io", "replay")      # import nothing else of the appliance (but LEAF_USES)
LEAF_USES = {"replay": {"wire", "config"}}               # a leaf built on other leaves: the recorded day's venue
YAML_LOADER = "appliance.config.yaml_lines"              # the one YAML loader: YAML by another name
JOINS_THE_SIMULATOR = ("bench", "sim")                   # may import the exchange and sim/ (nobody else may)

# (module, imported package or library): why it is still there and what removes it. None today.
KNOWN: dict[tuple[str, str], str] = {}


def imports_of(path: Path) -> set[str]:
    """Every module name ``path`` imports (relative imports resolved), at any depth of the file."""
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level] if path.name != "__init__.py" else \
                    parts[:len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel.as_posix(), (rel.parts[0] if len(rel.parts) > 1 else ""), imports_of(path)


def appliance_packages(names: set[str]) -> set[str]:
    """The top-level packages of ``appliance`` among the imported names."""
    return {name.split(".")[1] for name in names if name.startswith("appliance.") and name.count(".") >= 1}


def violations() -> set[tuple[str, str]]:
    found = set()
    for module, package, names in modules():
        used = appliance_packages(names) - {package}
        libraries = {name.split(".")[0] for name in names}
        if package in TRADING:                           # the four never import each other
            found |= {(module, other) for other in used & set(TRADING)}
        if package in LEAVES:                            # the codecs, the config checker, command_io, replay
            found |= {(module, other) for other in used - LEAF_USES.get(package, set())}
        if package == "exchange":                        # the simulator shares only the leaves
            found |= {(module, other) for other in used - set(LEAVES)}
        if package not in ("exchange",) + JOINS_THE_SIMULATOR:
            found |= {(module, joined) for joined in used & {"exchange", "sim"}}   # nor the joining package
        if package in HOT_PATH:
            found |= {(module, lib) for lib in libraries & set(EVENT_LOOP_AND_METRICS)}
            if ("yaml" in libraries or any(n == YAML_LOADER or n.startswith(YAML_LOADER + ".") for n in names)) \
                    and module not in CONFIG_LOADERS:
                found.add((module, "yaml"))
    return found


def test_no_import_breaks_a_rule_of_the_architecture():
    unexpected = sorted(violations() - set(KNOWN))
    assert not unexpected, "forbidden imports (see ARCHITECTURE.md):\n" + "\n".join(
        f"  appliance/{module} imports {what}" for module, what in unexpected)


def test_every_known_violation_still_exists():
    gone = sorted(set(KNOWN) - violations())
    assert not gone, "fixed, take them off KNOWN: " + ", ".join(f"{m} -> {w}" for m, w in gone)


def test_the_rules_catch_what_they_forbid(tmp_path, monkeypatch):
    """The checker itself: a risk module importing the OMS, the feed importing asyncio, a leaf importing
    the runtime (the exchange may import the leaf, not the runtime)."""
    fake = tmp_path / "appliance"
    (fake / "risk").mkdir(parents=True)
    (fake / "feed").mkdir()
    (fake / "risk" / "bad.py").write_text("from appliance.oms import orders\n")
    (fake / "feed" / "loop.py").write_text("import asyncio\nfrom ..exchange import venue\n")
    (fake / "oms").mkdir()
    (fake / "oms" / "hot.py").write_text("from appliance.config.yaml_lines import parse_yaml\n")
    (fake / "config").mkdir()
    (fake / "config" / "checker.py").write_text("from appliance.runtime import layout\n")
    (fake / "supervisor").mkdir()
    (fake / "supervisor" / "up.py").write_text("def run():\n    from appliance.sim import up\n")
    (fake / "command_io").mkdir()
    (fake / "command_io" / "args.py").write_text("from appliance.runtime import layout\n")
    (fake / "replay").mkdir()
    (fake / "replay" / "venue.py").write_text("from appliance.wire import itch\nfrom appliance.feed import books\n")
    (fake / "exchange").mkdir()
    (fake / "exchange" / "cli.py").write_text("from appliance.command_io import arguments\nfrom ..runtime import x\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "ROOT", tmp_path)
    monkeypatch.setattr(this, "PACKAGE", fake)
    assert violations() == {("risk/bad.py", "oms"), ("feed/loop.py", "asyncio"), ("feed/loop.py", "exchange"),
                            ("supervisor/up.py", "sim"), ("oms/hot.py", "yaml"), ("config/checker.py", "runtime"),
                            ("command_io/args.py", "runtime"), ("exchange/cli.py", "runtime"),
                            ("replay/venue.py", "feed")}


@pytest.mark.parametrize("package", sorted(p.name for p in PACKAGE.iterdir()
                                           if p.is_dir() and (p / "__init__.py").exists()))
def test_the_architecture_document_names_every_package(package):
    assert f"`{package}/`" in (ROOT / "ARCHITECTURE.md").read_text(), \
        f"ARCHITECTURE.md does not describe appliance/{package}/"


# ---------------------------------------------------------------- the tests' own house

TESTS = ROOT / "tests"
_IMPORTS_A_TEST_FILE = re.compile(r"^\s*(?:from|import)\s+(test_\w+)", re.MULTILINE)


def problems_of_test_files(tests: Path) -> list[str]:
    """Helpers live in ``tests/support/`` (or a directory's ``*kit.py``), never in a file named
    ``test_*`` that others import; a ``test_*`` file holds tests; a benchmark's test is in
    ``tests/bench/``. Scans the source text too: a child process's script imports by name."""
    problems = []
    for path in sorted(tests.rglob("*.py")):
        rel = path.relative_to(tests).as_posix()
        text = path.read_text()
        for imported in _IMPORTS_A_TEST_FILE.findall(text):
            problems.append(f"{rel} imports the test file {imported} (move what it needs to tests/support/)")
        if path.name.startswith("test_") and path.name != "test_architecture.py":
            tree = ast.parse(text, str(path))
            if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")
                       for n in ast.walk(tree)):
                problems.append(f"{rel} is named like a test file and holds no test")
            if not rel.startswith("bench/") and ("appliance.bench" in text or '"bench",' in text):
                problems.append(f"{rel} tests a benchmark outside tests/bench/")
    return problems


def test_helpers_are_not_test_files_and_benchmark_tests_are_in_bench():
    assert problems_of_test_files(TESTS) == []


def test_the_test_layout_check_catches_what_it_forbids(tmp_path):
    (tmp_path / "oms").mkdir()
    (tmp_path / "wire").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "oms" / "test_oms_support.py").write_text("class Rig:\n    pass\n")
    (tmp_path / "oms" / "test_oms_agent.py").write_text("from test_oms_support import Rig\n\ndef test_a():\n    Rig()\n")
    (tmp_path / "oms" / "test_child.py").write_text('SCRIPT = """\nimport test_oms_agent\n"""\n\ndef test_b():\n    pass\n')
    (tmp_path / "wire" / "test_wire_bench.py").write_text('def test_c():\n    main(["bench", "itch"])\n')
    (tmp_path / "bench" / "test_itch_bench.py").write_text('def test_d():\n    main(["bench", "itch"])\n')
    assert problems_of_test_files(tmp_path) == [
        "oms/test_child.py imports the test file test_oms_agent (move what it needs to tests/support/)",
        "oms/test_oms_agent.py imports the test file test_oms_support (move what it needs to tests/support/)",
        "oms/test_oms_support.py is named like a test file and holds no test",
        "wire/test_wire_bench.py tests a benchmark outside tests/bench/",
    ]
