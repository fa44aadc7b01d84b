"""Builds the plugin manager explicitly: built-in modules, entry points, then plugin folders.

Nothing is registered as an import side effect; call :func:`load_plugins`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import pkgutil
import stat
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import pluggy

from ..api import hookspecs
from ..api.errors import PluginError, UnknownNameError
from ..api.specs import BackboneSpec, DatasetSpec, DetectorSpec, PerturbationSpec, check_name

ENTRY_POINT_GROUP = "sidbench"
PLUGINS_DIR_ENV = "SIDBENCH_PLUGINS_DIR"
TRACE_ENV = "SIDBENCH_TRACE_HOOKS"
# what a plugin may raise while it loads and still be reported like any failed plugin (a plugin calling
# sys.exit(3) at import must neither end sidbench silently nor stop the others from loading)
PLUGIN_FAILURES = (Exception, SystemExit, KeyboardInterrupt)

# hook name -> (spec type, registry kind)
HOOKS = {
    "sidbench_detectors": (DetectorSpec, "detector"),
    "sidbench_datasets": (DatasetSpec, "dataset"),
    "sidbench_backbones": (BackboneSpec, "backbone"),
    "sidbench_perturbations": (PerturbationSpec, "perturbation"),
}
CORE_MODULES = ("sidbench.backbones", "sidbench.data.perturb")
BUILTIN_PACKAGES = ("sidbench.detectors", "sidbench.datasets")


@dataclass
class LoadedPlugin:
    name: str
    source: str  # builtin | entry point | plugins dir
    origin: str  # file path or distribution
    version: str
    hooks: list[str] = field(default_factory=list)


@dataclass
class FailedPlugin:
    name: str
    origin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.origin}) failed to load: {self.reason}"


class Plugins:
    """The plugin manager plus the specs its plugins returned, keyed by name."""

    def __init__(self, strict: bool = False):
        self.pm = pluggy.PluginManager("sidbench")
        self.pm.add_hookspecs(hookspecs)
        self.strict = strict
        self.loaded: list[LoadedPlugin] = []
        self.failed: list[FailedPlugin] = []
        self.specs: dict[str, dict[str, Any]] = {kind: {} for _, kind in HOOKS.values()}
        self._origin_of: dict[str, LoadedPlugin] = {}

    # -- registration -----------------------------------------------------------
    def add(self, obj: Any, name: str, source: str, origin: str, version: str = "") -> bool:
        """Register one plugin object, collect its specs; record a failure instead of raising."""
        try:
            unmarked = [
                n for n, f in inspect.getmembers(obj, callable)
                if n.startswith("sidbench_") and self.pm.parse_hookimpl_opts(obj, n) is None
            ]
            if unmarked:
                raise PluginError(f"{', '.join(unmarked)} lack(s) the @hookimpl decorator (from sidbench.api)")
            misspelled = [n for n, _ in inspect.getmembers(obj, callable)
                          if n not in HOOKS and self.pm.parse_hookimpl_opts(obj, n) is not None]
            if misspelled:
                raise PluginError(unknown_hooks(misspelled))
            self.pm.register(obj, name=name)
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(obj)
                known = ", ".join(HOOKS)
                raise PluginError(f"{exc}; known hooks: {known}") from None
            rec = LoadedPlugin(name, source, origin, version)
            specs = self._collect(obj, rec)
        except PLUGIN_FAILURES as exc:  # one broken plugin must not stop the others
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            self._fail(name, origin, exc)
            return False
        for kind, spec in specs:  # duplicates are an error in any mode
            self._put(kind, spec, rec)
        self.loaded.append(rec)
        return True

    def _collect(self, obj: Any, rec: LoadedPlugin) -> list[tuple[str, Any]]:
        out = []
        for hook_name, (spec_type, kind) in HOOKS.items():
            impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin is obj]
            for impl in impls:
                if os.environ.get(TRACE_ENV):
                    print(f"[sidbench hook] {rec.name}.{hook_name}()", file=sys.stderr)
                result = impl.function(**{a: None for a in impl.argnames})
                if not isinstance(result, (list, tuple)):
                    raise PluginError(f"{hook_name}() must return a list of {spec_type.__name__}, got {type(result).__name__}")
                for spec in result:
                    if not isinstance(spec, spec_type):
                        raise PluginError(f"{hook_name}() returned a {type(spec).__name__}, expected {spec_type.__name__}")
                    if kind != "backbone" or spec.pattern is None:
                        check_name(spec.name, kind)
                    extra = {"needs_fit": True} if kind == "detector" and _class_needs_fit(spec) else {}
                    if kind == "detector":
                        extra["plugin_version"] = rec.version
                        _check_defaults(spec)
                    out.append((kind, dataclasses.replace(spec, origin=rec.origin, **extra)))
                rec.hooks.append(hook_name)
        return out

    def _put(self, kind: str, spec: Any, rec: LoadedPlugin) -> None:
        table = self.specs[kind]
        if spec.name in table:
            first = table[spec.name]
            raise PluginError(
                f"{kind} name {spec.name!r} is defined twice: by {first.origin} and by {spec.origin}; rename one of them"
            )
        table[spec.name] = spec

    def _fail(self, name: str, origin: str, exc: BaseException) -> None:
        if isinstance(exc, SystemExit):
            reason = f"it called sys.exit({exc.code!r}) while loading"
        elif isinstance(exc, KeyboardInterrupt):
            reason = "it raised KeyboardInterrupt while loading"
        else:
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
        if os.environ.get(TRACE_ENV):
            traceback.print_exception(exc)
        failure = FailedPlugin(name, origin, reason)
        if self.strict:
            raise PluginError(str(failure)) from exc
        self.failed.append(failure)

    # -- discovery --------------------------------------------------------------
    def load_core(self) -> None:
        for modname in CORE_MODULES:
            mod = importlib.import_module(modname)
            self.add(mod, modname, "core", _file_of(mod), _version())

    def load_builtins(self) -> None:
        """Scan the built-in ``detectors/`` and ``datasets/`` folders: every module is a plugin."""
        for pkgname in BUILTIN_PACKAGES:
            pkg = importlib.import_module(pkgname)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                if info.name.startswith("_"):
                    continue
                modname = f"{pkgname}.{info.name}"
                origin = str(Path(info.module_finder.path) / f"{info.name}.py")  # type: ignore[union-attr]
                try:
                    mod = importlib.import_module(modname)
                except PLUGIN_FAILURES as exc:
                    self._fail(modname, origin, exc)
                    continue
                self.add(mod, modname, "builtin", origin, _version())

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name if dist else '?'} (entry point {ep.name} = {ep.value})"
            version = dist.version if dist else ""
            try:
                obj = ep.load()
            except PLUGIN_FAILURES as exc:
                self._fail(ep.name, origin, exc)
                continue
            self.add(obj, ep.name, "entry point", origin, version)

    def load_dir(self, folder: str | Path) -> None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            self._fail(str(folder), str(folder), PluginError("plugins dir does not exist"))
            return
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                mode = path.stat().st_mode
            except OSError as exc:  # a dangling link, a file removed meanwhile
                self._fail(path.stem, str(path), PluginError(f"cannot read it ({exc.strerror or exc}); skipped"))
                continue
            if not stat.S_ISREG(mode):  # a FIFO named x.py would block the import forever
                self._fail(path.stem, str(path), PluginError(f"not a regular file ({_file_kind(mode)}); skipped"))
                continue
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            modname = f"sidbench_plugin_{path.stem}_{digest}"
            try:
                spec = importlib.util.spec_from_file_location(modname, path)
                mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                sys.modules[modname] = mod
                spec.loader.exec_module(mod)  # type: ignore[union-attr]
            except PLUGIN_FAILURES as exc:
                sys.modules.pop(modname, None)
                self._fail(path.stem, str(path), exc)
                continue
            self.add(mod, path.stem, "plugins dir", str(path), getattr(mod, "__version__", ""))

    # -- lookups ----------------------------------------------------------------
    @property
    def detectors(self) -> dict[str, DetectorSpec]:
        return self.specs["detector"]

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        return self.specs["dataset"]

    @property
    def backbones(self) -> dict[str, BackboneSpec]:
        return self.specs["backbone"]

    @property
    def perturbations(self) -> dict[str, PerturbationSpec]:
        return self.specs["perturbation"]

    def detector(self, name: str) -> DetectorSpec:
        """A spec by exact name, or a family name (``rine``) for its default variant."""
        table = self.detectors
        if name in table:
            return table[name]
        family = [s for s in table.values() if s.family == name]
        defaults = [s for s in family if s.default]
        if len(defaults) == 1:
            return defaults[0]
        if len(family) == 1:
            return family[0]
        raise UnknownNameError("detector", name, set(table) | {s.family for s in table.values()})

    def backbone(self, name: str) -> BackboneSpec:
        import re

        table = self.backbones
        if name in table and table[name].pattern is None:
            return table[name]
        for spec in table.values():
            if spec.pattern and re.match(spec.pattern, name) and (":" in name or name not in table):
                return spec
        raise UnknownNameError("backbone", name, [s.name for s in table.values() if not s.pattern])

    def dataset(self, name: str) -> DatasetSpec:
        if name in self.datasets:
            return self.datasets[name]
        raise UnknownNameError("dataset", name, self.datasets)

    def perturbation(self, name: str) -> PerturbationSpec:
        if name in self.perturbations:
            return self.perturbations[name]
        raise UnknownNameError("perturbation", name, self.perturbations)


def load_plugins(
    plugins_dirs: Iterable[str | Path] = (), *, strict: bool = False, entry_points: bool = True
) -> Plugins:
    """A fresh plugin manager with every discoverable plugin registered."""
    plugins = Plugins(strict=strict)
    plugins.load_core()
    plugins.load_builtins()
    if entry_points:
        plugins.load_entry_points()
    dirs = list(plugins_dirs)
    env = os.environ.get(PLUGINS_DIR_ENV)
    if env:
        dirs += [d for d in env.split(os.pathsep) if d]
    for d in dirs:
        plugins.load_dir(d)
    return plugins


_default: Plugins | None = None


def default_plugins() -> Plugins:
    """The plugins of the Python API (``sidbench.load_detector``), loaded on first use."""
    global _default
    if _default is None:
        _default = load_plugins()
    return _default


def _class_needs_fit(spec: DetectorSpec) -> bool:
    """A detector class that declares ``needs_fit = True`` needs fitting even when its spec does not say so
    (only a class given as the factory is looked at: a ``"module:attr"`` string is not imported here)."""
    return not spec.needs_fit and isinstance(spec.factory, type) and getattr(spec.factory, "needs_fit", False) is True


def _check_defaults(spec: DetectorSpec) -> None:
    """A spec's defaults must pass its own option declarations (an ``Option(0, min=1)`` is the plugin's bug)."""
    from ..api.errors import SidbenchError
    from ..api.options import check_options

    try:
        check_options(spec, {k: v for k, v in spec.options.items() if v is not None})
    except SidbenchError as exc:
        raise PluginError(f"the default of an option of {spec.name!r} does not pass its declaration: {exc}") from None


def unknown_hooks(names: list[str]) -> str:
    """'unknown hook 'sidbench_detector' (did you mean 'sidbench_detectors'?); the hooks are: ...'."""
    import difflib

    parts = []
    for n in names:
        close = difflib.get_close_matches(n, list(HOOKS), n=1, cutoff=0.6)
        parts.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown hook {', '.join(parts)}; the hooks are {', '.join(HOOKS)}"


def _file_of(mod: ModuleType) -> str:
    return str(getattr(mod, "__file__", mod.__name__))


def _version() -> str:
    from .. import __version__

    return __version__


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"
