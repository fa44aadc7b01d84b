"""The package list, by discovery (metadata, dependencies and the console script are in pyproject.toml).

The core is every package under ``sidbench/``; the built-in plugin folders ``detectors/`` and ``datasets/``
ship as ``sidbench.detectors`` and ``sidbench.datasets`` (never as top-level packages: ``datasets`` would
shadow the Hugging Face library). A new module or subpackage in any of them ships with no edit here.
"""
from setuptools import find_packages, setup

PLUGIN_FOLDERS = {"sidbench.detectors": "detectors", "sidbench.datasets": "datasets"}


def packages() -> list[str]:
    # a development checkout may link sidbench/detectors -> ../detectors: those come from PLUGIN_FOLDERS only
    core = find_packages(include=["sidbench", "sidbench.*"],
                         exclude=[p for name in PLUGIN_FOLDERS for p in (name, f"{name}.*")])
    plugins = [name for name in PLUGIN_FOLDERS]
    plugins += [f"{name}.{sub}" for name, folder in PLUGIN_FOLDERS.items() for sub in find_packages(folder)]
    return sorted(core + plugins)


setup(packages=packages(), package_dir={"sidbench": "sidbench", **PLUGIN_FOLDERS})
