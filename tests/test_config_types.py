"""Settings of the wrong kind in a TOML file are one line naming the key (#16.9): detector options by the kind of
their default, boolean run keys only as booleans."""
from __future__ import annotations

import pytest

from conftest import make_folder
from test_results_folder import one_line_error


@pytest.mark.parametrize("toml, message", [
    ('detectors = ["univfd"]\n[detector_options.univfd]\nmax_epochs = "abc"\n',
     "detector 'univfd.progan': invalid option value max_epochs='abc': expected an integer, like the default 100"),
    ('detectors = ["univfd"]\n[detector_options.univfd]\naugment = "no"\n', "invalid option value augment='no': expected true or false"),
    ('detectors = ["tip_adapter"]\n[detector_options.tip_adapter]\ninit_alpha = true\n', "invalid option value init_alpha=True: expected a number"),
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
    from sidbench.api.options import accepts, option_types

    assert accepts(option_types(1), 3) and accepts(option_types(1e-3), 1)
    assert not accepts(option_types(1), 3.0) and not accepts(option_types(1), True)
    assert not accepts(option_types(True), 1) and not accepts(option_types(1e-3), "0.1")
    from sidbench.registry import load_detector

    assert load_detector("rine.progan4", backbone="clip-tiny", blocks=[0, 1]).block_index == [0, 1]  # declared kinds
