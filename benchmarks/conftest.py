"""Benchmarks reuse the test fixtures (clip-tiny, a private SIDBENCH_CACHE) from tests/conftest.py."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("sidbench_tests_conftest", Path(__file__).resolve().parent.parent / "tests" / "conftest.py")
_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests)
_session_cache, plugins, tiny_backbone = _tests._session_cache, _tests.plugins, _tests.tiny_backbone
