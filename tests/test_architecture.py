"""The layers import one way, core never imports a built-in plugin, plugins use only the public API,
and scoring (head padding, multi-crop averaging) is written once, in the engine."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "sidbench"
PLUGIN_DIRS = (REPO / "detectors", REPO / "datasets")
PLUGIN_MAY_IMPORT = ("sidbench.api", "sidbench.data", "sidbench.nets")


def imports_of(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against ``package``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def module_package(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts[:-1]) if path.name != "__init__.py" else ".".join(parts)


def installed_layout(root: Path) -> Path:
    """A copy of the package as a wheel installs it (detectors/ and datasets/ inside sidbench/), for
    import-linter, which reads packages from the file system."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(CORE, root / "sidbench", ignore=ignore)
    for folder in PLUGIN_DIRS:
        shutil.copytree(folder, root / "sidbench" / folder.name, ignore=ignore, dirs_exist_ok=True)
    return root


def test_layers_and_plugins_import_one_way(tmp_path):
    """Every import-linter contract (layers, plugins use the public API, core never imports a plugin) on the
    whole package, built-in plugins included. The tool is a dev dependency: missing, this fails."""
    exe = shutil.which("lint-imports")
    assert exe is not None, "import-linter is not installed: pip install -e '.[dev]'"
    root = installed_layout(tmp_path / "tree")
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    out = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=root, capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "3 kept" in out.stdout, out.stdout[-2000:]


def test_core_never_imports_a_builtin_plugin():
    bad = []
    for path in CORE.rglob("*.py"):
        for name in imports_of(path, module_package(path)):
            if name.startswith(("sidbench.detectors", "sidbench.datasets")):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, bad


@pytest.mark.parametrize("folder", PLUGIN_DIRS, ids=lambda p: p.name)
def test_builtin_plugins_use_only_the_public_api(folder):
    bad = []
    for path in folder.glob("*.py"):
        for name in imports_of(path, f"sidbench.{folder.name}"):
            if name.startswith("sidbench") and not name.startswith(PLUGIN_MAY_IMPORT) and name != "sidbench" \
                    and not name.startswith(f"sidbench.{folder.name}"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, bad


def test_one_place_for_multi_crop_averaging_and_head_padding():
    """Multi-crop protocols are expanded and averaged only by the engine (``n_views`` is read nowhere else),
    and zero padding of batches is written once (``pad_rows``)."""
    allowed = {CORE / "data" / "preprocess.py", CORE / "engine" / "inputs.py", CORE / "engine" / "scoring.py"}
    users = {p for p in [*CORE.rglob("*.py"), *(f for d in PLUGIN_DIRS for f in d.glob("*.py"))]
             if "n_views" in p.read_text()}
    assert users <= allowed, sorted(str(p.relative_to(REPO)) for p in users - allowed)
    padders = {p for p in CORE.rglob("*.py") if "new_zeros(" in p.read_text()}
    assert padders == {CORE / "engine" / "inputs.py"}, padders


def test_api_imports_no_torch():
    code = "import sys, sidbench.api; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


LONG_MODULE = 360  # "no module over ~350 lines without a reason in its docstring" (issue 21)


def test_a_long_module_says_why_in_its_docstring():
    """A module past ~350 lines is split by concern, or its docstring says why it is one file."""
    import re

    unexplained = []
    for folder in ("sidbench", "detectors", "datasets"):
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") <= LONG_MODULE:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not re.search(r"longer than|over \d{3} lines", doc, re.IGNORECASE):
                unexplained.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not unexplained, f"split these by concern or say why in the module docstring: {unexplained}"
