"""One rule finds a published member path in a zip, for ``NAME@ZIP`` (:func:`sidbench.nets.release.checkpoint_file`)
and ``NAME@official`` downloads (:func:`sidbench.registry.download.unpack_member`) alike."""
from __future__ import annotations

import zipfile

import pytest

from sidbench.api import WeightsError
from sidbench.nets.release import checkpoint_file, find_member
from sidbench.registry.download import unpack_member

DRCT = ["pretrained/DRCT-2M/sdv14/clip/13_acc0.9664.pth", "pretrained/DRCT-2M/sdv2/clip/13_acc0.9664.pth",
        "pretrained/GenImage/sdv14/clip/2_acc0.9558.pth"]


@pytest.mark.parametrize("member, names, found", [
    ("C2P.pth", ["C2P.pth"], ["C2P.pth"]),  # exactly the entry
    ("/C2P.pth/", ["C2P.pth"], ["C2P.pth"]),  # slashes around are ignored
    ("Grag2021_latent/model_epoch_best.pth",  # the zip wraps everything in one more folder
     ["weights/Grag2021_latent/model_epoch_best.pth", "weights/Grag2021_progan/model_epoch_best.pth"],
     ["weights/Grag2021_latent/model_epoch_best.pth"]),
    ("pretrained/DRCT-2M/sdv14/clip/13_acc0.9664.pth",  # the zip lacks a folder the published path names
     ["DRCT-2M/sdv14/clip/13_acc0.9664.pth", "DRCT-2M/sdv2/clip/13_acc0.9664.pth"],
     ["DRCT-2M/sdv14/clip/13_acc0.9664.pth"]),
    ("sdv14/clip/13_acc0.9664.pth", DRCT, [DRCT[0]]),
    ("clip/13_acc0.9664.pth", DRCT, DRCT[:2]),  # ambiguous: both, for the caller to refuse
    ("c.pth", ["c.pth", "a/c.pth"], ["c.pth"]),  # an exact entry wins over a trailing-part one
    ("b/c.pth", ["ab/c.pth"], []),  # whole folder names only, not the end of a name
    ("nope.pth", DRCT, []),
])
def test_find_member(member, names, found):
    assert find_member(names, member) == found


def zip_of(path, names):
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(names):
            zf.writestr(name, f"payload {i}".encode())
    return path


def test_both_callers_take_the_same_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    archive = zip_of(tmp_path / "pretrained.zip", [n[len("pretrained/"):] for n in DRCT])
    member = DRCT[0]  # the published path, one folder deeper than the zip
    assert checkpoint_file(archive, member).read_bytes() == b"payload 0"
    unpack_member(archive, member, tmp_path / "out.pth", "URL", "FIX")
    assert (tmp_path / "out.pth").read_bytes() == b"payload 0"


def test_both_callers_refuse_no_entry_and_several_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    archive = zip_of(tmp_path / "pretrained.zip", DRCT)
    for member, nets_says, registry_says in (("nope.pth", "holds no member", "has no member"),
                                             ("clip/13_acc0.9664.pth", "more than one", "several members matching")):
        with pytest.raises(WeightsError, match=nets_says) as a:
            checkpoint_file(archive, member)
        with pytest.raises(WeightsError, match=registry_says) as b:
            unpack_member(archive, member, tmp_path / "out.pth", "URL", "FIX")
        assert "\n" not in str(a.value) + str(b.value)
