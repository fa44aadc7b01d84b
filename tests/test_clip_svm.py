"""CLIP + SVM: scores equal scikit-learn's decision_function fitted here; attribution; pickle-free round trip."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from sidbench.api import Record
from sidbench.api import FeatureSet

W = 64  # clip-tiny width


def synthetic(n_per: int, generators=("gan",), seed=0, split="train"):
    """Records and cls_final features: reals around one mean, each generator around its own."""
    rng = np.random.default_rng(seed)
    centres = {g: rng.normal(0, 1, W) for g in ("real", *generators)}
    recs, feats = [], []
    for g, c in centres.items():
        for i in range(n_per):
            label = 0 if g == "real" else 1
            recs.append(Record(f"/{split}/{g}/{'0_real' if label == 0 else '1_fake'}/{i}.png", label, split, "", "" if g == "real" else g))
            feats.append(c + rng.normal(0, 1.5, W))
    return recs, torch.tensor(np.array(feats), dtype=torch.float32)


def fit_data(train, val=None):
    """A FitData serving fixed feature tensors (the contract of sidbench.api.FitData, nothing else)."""
    from sidbench.api import FitData

    table = {}
    for recs, x in (train, val or ([], None)):
        table.update({r.path: x[i] for i, r in enumerate(recs)})

    class TableFitData(FitData):
        seed, protocol = 0, "resize_center_crop"

        def __init__(self, splits):
            self.splits = splits

        @property
        def has_val(self):
            return bool(self.splits["val"])

        def records(self, split="train"):
            return self.splits[split]

        def features(self, split="train", names=("cls_final",), **kw):
            recs = self.splits[split]
            return FeatureSet({"cls_final": torch.stack([table[r.path] for r in recs])}, list(recs))

        def subset(self, train):
            return TableFitData({"train": list(train), "val": self.splits["val"]})

    return TableFitData({"train": list(train[0]), "val": list(val[0]) if val else []})


def normed(x):
    return torch.nn.functional.normalize(x, dim=-1).double().numpy()


def test_scores_equal_sklearn_decision_function(plugins):
    from sklearn.svm import LinearSVC

    from sidbench.registry import load_detector

    train, test = synthetic(30, seed=0), synthetic(10, seed=0, split="test")
    det = load_detector("clip_svm", backbone="clip-tiny", plugins=plugins)
    det.fit(fit_data(train), log=lambda m: None)
    ref = LinearSVC(C=1.0, dual="auto", max_iter=10000, random_state=0).fit(normed(train[1]), [r.label for r in train[0]])
    got = det.score({"cls_final": test[1]}).double().numpy()
    np.testing.assert_allclose(got, ref.decision_function(normed(test[1])), rtol=1e-4, atol=1e-5)
    assert det.preprocess == "resize_center_crop" and det.required_features == ("cls_final",)


def test_c_grid_is_searched_on_validation(plugins):
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.svm import LinearSVC

    from sidbench.registry import load_detector

    train, val = synthetic(20, seed=1), synthetic(20, seed=1, split="val")
    grid = [1e-3, 0.1, 10.0]
    det = load_detector("clip_svm", backbone="clip-tiny", plugins=plugins, c_grid=grid)
    summary = det.fit(fit_data(train, val), log=lambda m: None)
    y = [r.label for r in train[0]]
    baccs = [balanced_accuracy_score([r.label for r in val[0]],
                                     LinearSVC(C=c, dual="auto", max_iter=10000, random_state=0).fit(normed(train[1]), y)
                                     .predict(normed(val[1]))) for c in grid]
    assert summary["C"] == grid[int(np.argmax(baccs))]


def test_shots_subsample_per_class(plugins):
    from sidbench.registry import load_detector

    det = load_detector("clip_svm", backbone="clip-tiny", plugins=plugins, shots=3)
    assert det.fit(fit_data(synthetic(20, seed=2)), log=lambda m: None)["n_train"] == 6


def test_attribution_one_vs_one(plugins, tmp_path):
    from sklearn.svm import SVC

    from sidbench.registry import load_detector

    gens = ("dalle", "progan", "sd")  # "real" sorts between them: pairs with both signs
    train, val = synthetic(15, gens, seed=3), synthetic(8, gens, seed=3, split="val")
    det = load_detector("clip_svm", backbone="clip-tiny", plugins=plugins, attribution=True)
    det.fit(fit_data(train, val), log=lambda m: None)
    ref = SVC(kernel="linear", C=1.0, decision_function_shape="ovo").fit(
        normed(train[1]), ["real" if r.label == 0 else r.generator for r in train[0]])
    assert det.classes == list(ref.classes_) == ["dalle", "progan", "real", "sd"]
    dec = ref.decision_function(normed(val[1]))
    np.testing.assert_allclose(det.decision({"cls_final": val[1]}).double().numpy(), dec, rtol=1e-4, atol=1e-4)
    # pairs in order (0,1),(0,2),(0,3),(1,2),(1,3),(2,3); positive votes for the first class of a pair
    fake_vs_real = np.stack([dec[:, 1], dec[:, 3], -dec[:, 5]], axis=1)  # dalle-real, progan-real, real-sd
    np.testing.assert_allclose(det.score({"cls_final": val[1]}).double().numpy(), fake_vs_real.max(1), rtol=1e-4, atol=1e-4)

    path = det.save(str(tmp_path / "ckpt" / "svm.safetensors"))
    rows = list(csv.reader(open(tmp_path / "ckpt" / "svm.confusion.csv")))
    assert rows[0][1:] == det.classes and [r[0] for r in rows[1:]] == det.classes
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.shape == (4, 4) and counts.sum() == len(val[0]) and counts.sum(1).tolist() == [8, 8, 8, 8]
    again = load_detector("clip_svm", weights=path, backbone="clip-tiny", plugins=plugins, attribution=True)
    torch.testing.assert_close(again.score({"cls_final": val[1]}), det.score({"cls_final": val[1]}))
    plain = load_detector("clip_svm", weights=path, backbone="clip-tiny", plugins=plugins)  # the checkpoint says so
    assert plain.options["attribution"] is True and plain.options_from_checkpoint == {"attribution": True}
    torch.testing.assert_close(plain.score({"cls_final": val[1]}), det.score({"cls_final": val[1]}))


def test_round_trip_without_pickle(plugins, tmp_path):
    from safetensors import safe_open

    from sidbench.registry import load_detector
    from sidbench.api import SidbenchError

    train = synthetic(10, seed=4)
    det = load_detector("clip_svm", backbone="clip-tiny", plugins=plugins, C=0.5)
    det.fit(fit_data(train), log=lambda m: None)
    path = det.save(str(tmp_path / "svm.safetensors"))
    with safe_open(path, framework="pt") as f:
        assert sorted(f.keys()) == ["svm.coef", "svm.intercept"]
    assert b"\x80\x04" not in open(path, "rb").read()[:64]
    again = load_detector(f"clip_svm@{path}", backbone="clip-tiny", plugins=plugins)
    assert again.C == 0.5
    torch.testing.assert_close(again.score({"cls_final": train[1]}), det.score({"cls_final": train[1]}))
    with pytest.raises(SidbenchError, match="attribution"):
        load_detector("clip_svm", weights=path, backbone="clip-tiny", plugins=plugins, attribution=True)
