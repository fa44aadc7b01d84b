"""Plugin discovery: built-in folders, entry points, plugin dirs; broken plugins with their messages."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidbench.api import PluginError, UnknownNameError
from sidbench.registry import load_plugins

PLUGIN_FILES = Path(__file__).parent / "plugins"
REPO = Path(__file__).resolve().parent.parent


def _dir_with(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "plugdir"
    d.mkdir(exist_ok=True)
    for n in names:
        src = PLUGIN_FILES / f"{n}.py"
        shutil.copy(src if src.exists() else PLUGIN_FILES / "broken" / f"{n}.py", d / f"{n}.py")
    return d


def test_builtins_are_plugins(plugins):
    assert "clip_zeroshot" in plugins.detectors
    assert {"folder", "quickstart"} <= set(plugins.datasets)
    assert {"jpeg", "webp", "blur", "resize", "crop", "noise"} <= set(plugins.perturbations)
    assert "clip-tiny" in plugins.backbones
    sources = {p.name: p.source for p in plugins.loaded}
    assert sources["sidbench.detectors.tip_adapter"] == "builtin"
    assert plugins.failed == []


def test_plugins_dir_loads_a_file(tmp_path):
    plugins = load_plugins([_dir_with(tmp_path, "good_detector")])
    spec = plugins.detectors["mean_embed"]
    assert spec.origin.endswith("good_detector.py")
    rec = next(p for p in plugins.loaded if p.name == "good_detector")
    assert (rec.source, rec.version, rec.hooks) == ("plugins dir", "1.2.3", ["sidbench_detectors"])


def test_plugins_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_PLUGINS_DIR", str(_dir_with(tmp_path, "good_detector")))
    assert "mean_embed" in load_plugins().detectors


@pytest.mark.parametrize(
    "name, message",
    [
        ("broken_import", "ModuleNotFoundError: No module named 'sidbench_this_module_does_not_exist'"),
        ("misspelled_hook", "sidbench_detector"),
        ("wrong_return", "returned a str, expected DetectorSpec"),
        ("unmarked_hook", "lack(s) the @hookimpl decorator"),
    ],
)
def test_broken_plugin_is_reported_and_others_load(tmp_path, name, message):
    plugins = load_plugins([_dir_with(tmp_path, name, "good_detector")])
    assert "mean_embed" in plugins.detectors  # the good one still loads
    assert "clip_zeroshot" in plugins.detectors
    [failure] = plugins.failed
    assert failure.name == name and failure.origin.endswith(f"{name}.py")
    assert message in failure.reason
    assert name not in {p.name for p in plugins.loaded}


def test_strict_mode_raises_on_broken_plugin(tmp_path):
    with pytest.raises(PluginError, match="broken_import"):
        load_plugins([_dir_with(tmp_path, "broken_import")], strict=True)


def test_duplicate_name_names_both_origins(tmp_path):
    with pytest.raises(PluginError) as info:
        load_plugins([_dir_with(tmp_path, "duplicate_name")])
    msg = str(info.value)
    assert "'clip_zeroshot' is defined twice" in msg
    assert "tip_adapter.py" in msg and "duplicate_name.py" in msg


def _fake_distribution(site: Path, module_source: str, module: str) -> None:
    """An installed distribution as importlib.metadata sees it: a module plus a dist-info folder."""
    (site / f"{module}.py").write_text(module_source)
    info = site / "fakeplug-0.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.4.2\n")
    (info / "entry_points.txt").write_text(f"[sidbench]\nfakeplug = {module}\n")


def test_entry_point_from_an_installed_distribution(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, (PLUGIN_FILES / "good_detector.py").read_text(), "fakeplug_good")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = load_plugins()
    assert "mean_embed" in plugins.detectors
    rec = next(p for p in plugins.loaded if p.name == "fakeplug")
    assert rec.source == "entry point" and rec.version == "0.4.2"
    assert "fakeplug" in rec.origin


def test_broken_entry_point_is_reported(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "raise RuntimeError('boom at import')\n", "fakeplug_broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = load_plugins()
    [failure] = plugins.failed
    assert failure.name == "fakeplug" and "RuntimeError: boom at import" in failure.reason
    assert "clip_zeroshot" in plugins.detectors


def test_file_dropped_into_detectors_is_discovered(tmp_path, monkeypatch):
    """The editable install maps detectors/ to sidbench.detectors, and its modules are scanned (no hand-kept
    list): a file in a folder of that package needs no other edit. The test adds a folder to the package's
    path instead of writing into the source tree."""
    import sidbench.detectors

    builtin = load_plugins().detectors["npr.progan4"].origin
    assert Path(builtin).resolve() == (REPO / "detectors" / "npr.py").resolve()  # worktrees link sidbench/detectors
    folder = tmp_path / "more_detectors"
    folder.mkdir()
    target = folder / "zz_test_dropin.py"
    target.write_text((PLUGIN_FILES / "good_detector.py").read_text().replace("mean_embed", "dropin_embed"))
    monkeypatch.setattr(sidbench.detectors, "__path__", [*sidbench.detectors.__path__, str(folder)])
    try:
        plugins = load_plugins()
        assert Path(plugins.detectors["dropin_embed"].origin).resolve() == target.resolve()
    finally:
        sys.modules.pop("sidbench.detectors.zz_test_dropin", None)


def test_family_name_and_did_you_mean(plugins):
    assert plugins.detector("clip_zeroshot").name == "clip_zeroshot"
    with pytest.raises(UnknownNameError, match="Did you mean 'clip_zeroshot'"):
        plugins.detector("clip_zeroshoot")


def test_list_is_fast_and_imports_no_torch():
    code = "import sys; from sidbench.cli import main; main(['list', 'detectors']); print('torch' in sys.modules)"
    t = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.time() - t
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False", "sidbench list imported torch"
    assert "clip_zeroshot" in lines
    # a subprocess's wall time on a shared machine says little: bound it loosely, and bound what it imported
    assert elapsed < 30.0, f"sidbench list took {elapsed:.2f}s"


def test_help_everywhere():
    from sidbench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage: sidbench " + name)


def test_every_builtin_plugin_loads_strictly():
    """A built-in detector that fails to import would silently vanish from the leaderboard."""
    plugins = load_plugins(strict=True, entry_points=False)
    families = {s.family for s in plugins.detectors.values()}
    assert {"rine", "univfd", "clip_svm", "tip_adapter", "tip_adapter_f", "clip_zeroshot"} <= families
    from sidbench.run.inputs import default_detectors

    assert {"cnndetection", "npr", "corvi2023"} <= families
    # cnndetection and corvi2023 opt out of the quickstart (no offline ImageNet init / no training code)
    assert default_detectors(plugins) == ["clip_svm", "clip_zeroshot", "npr.progan4", "rine.progan4", "tip_adapter",
                                          "tip_adapter_f", "univfd.progan"]
