"""Settings of the wrong kind in a TOML file are one line naming the key (#16.9): detector options by the kind of
their default, boolean run keys only as booleans."""
from __future__ import annotations

import pytest

from conftest import make_folder
from test_results_folder import one_line_error


@pytest.mark.parametrize("toml, message", [
    ('detectors = ["univfd"]\n[detector_options.univfd]\nmax_epochs = "abc"\n',
     "detector 'univfd.progan': invalid option value (max_epochs must be an integer (like its default 100), got 'abc')"),
    ('detectors = ["univfd"]\n[detector_options.univfd]\naugment = "no"\n', "augment must be true or false"),
    ('detectors = ["tip_adapter"]\n[detector_options.tip_adapter]\ninit_alpha = true\n', "init_alpha must be a number"),
    ('detectors = ["univfd"]\nprogress = "yes"\n', "progress must be true or false, got 'yes'"),
    ('detectors = ["univfd"]\nno_cache = 1\n', "no_cache must be true or false, got 1"),
    ('detectors = ["univfd"]\ncompile = "false"\n', "compile must be true or false"),
    ('detectors = ["univfd"]\ndetector_options = {univfd = 5}\n', "detector_options must be a table of tables"),
])
def test_wrong_kinds_in_toml_are_one_line(tmp_path, capsys, toml, message):
    data = make_folder(tmp_path / "d", splits=("s",), n=2)
    (tmp_path / "run.toml").write_text(toml)
    argv = ["run", "--config", str(tmp_path / "run.toml"), "--data", str(data), "--train", str(data),
            "--backbone", "clip-tiny", "--out", str(tmp_path / "out"), "--no-progress"]
    assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "out").exists()


def test_option_kinds_follow_the_defaults():
    from sidbench.api.option_types import option_type_error

    assert option_type_error("epochs", 3, 1) is None and option_type_error("lr", 1, 1e-3) is None
    assert option_type_error("epochs", 3.0, 1) and option_type_error("epochs", True, 1)
    assert option_type_error("tie", 1, True) and option_type_error("lr", "0.1", 1e-3)
    assert option_type_error("blocks", [0, 11], "all") is None  # string defaults may take other kinds
