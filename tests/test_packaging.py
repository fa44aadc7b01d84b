"""The built wheel ships every module of the source tree, under the ``sidbench`` namespace only, and works
when installed where the development tree cannot shadow it."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN_FOLDERS = {"detectors": "sidbench/detectors", "datasets": "sidbench/datasets"}


def clean_tree(dest: Path) -> Path:
    """The files a fresh clone of the working tree holds (tracked and untracked, not git-ignored): never the
    development symlinks sidbench/detectors and sidbench/datasets, caches or build outputs."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell the source files from build outputs")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def expected_modules(tree: Path) -> set[str]:
    """Where every module of the source tree must land in the wheel."""
    out = {str(p.relative_to(tree)) for p in (tree / "sidbench").rglob("*.py")}
    for folder, target in PLUGIN_FOLDERS.items():
        out |= {f"{target}/{p.relative_to(tree / folder)}" for p in (tree / folder).rglob("*.py")}
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel built offline from a clean copy of the tree, that tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = clean_tree(tmp / "src")
    # offline with the setuptools installed here; where there is none (Python 3.12 venvs), pip fetches it
    offline = ["--no-index", "--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *offline, "-w", str(tmp / "dist"), str(tree)],
                   check=True, capture_output=True, timeout=300)
    [whl] = (tmp / "dist").glob("sidbench-*.whl")
    return whl, tree


def test_wheel_holds_every_module_of_the_source_tree(wheel):
    whl, tree = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    shipped = {n for n in names if n.endswith(".py")}
    assert shipped == expected_modules(tree)
    assert {n.split("/")[0] for n in names} == {"sidbench", whl.name.split("-py3")[0] + ".dist-info"}
    for sub in ("studies", "api", "registry", "engine", "results", "run"):  # the ones the hand-kept list forgot
        assert f"sidbench/{sub}/__init__.py" in names
    entry_points = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "sidbench = sidbench.cli:main" in entry_points


def test_installed_wheel_lists_and_imports_its_own_plugins(wheel, tmp_path):
    whl, _ = wheel
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(whl)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import sidbench.detectors.rine as m, sidbench.run.orchestrate as o; "
                            "print(m.__file__); print(o.__file__)"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(w.startswith(str(target)) for w in where), where
    out = subprocess.run([sys.executable, "-m", "sidbench", "list", "detectors", "--names"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"rine.progan4", "univfd.progan", "clip_svm", "clip_zeroshot"} <= set(out.stdout.split())
