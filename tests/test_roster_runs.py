"""The done-means runs of the detector issues: every new detector family of an issue, each with a file in its
official format (tiny seeded configurations, built by the per-family test modules), beside the older detectors
in ONE ``sidbench run`` and one leaderboard. Each family's logits are checked against an independent forward of
its official code in its own test module; here the point is that they all run together (tiny configurations:
seconds each)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sidbench.cli import main

from conftest import make_folder, write_image


def npr_file(path: Path, seed: int) -> Path:
    from test_pixel_detectors import STAGES, official_shapes, random_state, trainer_dump

    npr = random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), seed)
    torch.save(trainer_dump({f"module.{k}": v for k, v in npr.items()}), path)
    return path


def cnndetection_file(path: Path, seed: int) -> Path:
    from test_pixel_detectors import official_shapes, random_state, trainer_dump

    torch.save(trainer_dump(random_state(official_shapes(7), seed)), path)
    return path


def heads_on_clip_tiny(w: Path) -> tuple[Path, Path]:
    """RINE's and UnivFD's official head formats, sized for clip-tiny (as tests/test_pixel_runs.py builds them)."""
    from sidbench.registry import load_detector, load_plugins

    rine = load_detector("rine.progan2", backbone="clip-tiny", plugins=load_plugins())
    torch.save({k: torch.randn_like(v) for k, v in rine.net.state_dict().items()}, w / "model_2class_trainable.pth")
    torch.save({"weight": torch.randn(1, rine.backbone_info.embed_dim) * 0.1, "bias": torch.zeros(1)},
               w / "fc_weights.pth")
    return w / "model_2class_trainable.pth", w / "fc_weights.pth"


def run(data: Path, out: Path, detectors: list[str], *extra: str) -> pd.DataFrame:
    assert main(["run", "--data", str(data), "--detectors", ",".join(detectors), "--backbone", "clip-tiny",
                 "--out", str(out), "--batch-size", "2", "--no-progress", *extra]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert np.isfinite(scores.logit).all()
    return scores


def families(scores: pd.DataFrame) -> pd.Series:
    return scores.detector.str.replace(r"\[.*\]$", "", regex=True)


def test_issue22_foundation_model_detectors_beside_rine_univfd_npr(tmp_path):
    """c2p_clip, effort, drct.convnext, drct.clip, bfree, dda, commfor, RINE, UnivFD and NPR in one run."""
    import test_fm_clip_detectors as clip
    import test_fm_vit_detectors as vit

    w = tmp_path / "w"
    w.mkdir()
    dets = [f"{name}{clip.options_text(cfg)}@{path}" for name, (path, _, cfg) in clip.release_zips(w / "clip").items()]
    states = {"bfree": vit.random_state(vit.bfree_shapes(**vit.TINY), 31),
              "dda": vit.random_state(vit.dda_shapes(**vit.TINY), 32),
              "commfor": vit.random_state(vit.commfor_shapes(384, **vit.TINY), 33)}
    files = {"bfree": vit.write_bfree(w / "model_epoch_best.pth", states["bfree"]),
             "dda": vit.write_dda(w / "DDA_ckpt.pth", states["dda"]),
             "commfor": vit.write_commfor(w / "model.safetensors", states["commfor"])}
    dets += [f"{n}{vit.TINY_NAME}@{f}" for n, f in files.items()]
    rine, univfd = heads_on_clip_tiny(w)
    dets += [f"rine.progan2@{rine}", f"univfd@{univfd}", f"npr@{npr_file(w / 'NPR.pth', 34)}"]
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(64, 64), seed=7)
    write_image(data / "gan" / "1_fake" / "odd.png", np.random.default_rng(3), (231, 346), fake=True)
    scores = run(data, tmp_path / "out", dets)
    fam = families(scores)
    expected = {"c2p_clip", "effort.genimage", "drct.convnext", "drct.clip", "bfree", "dda", "commfor.384",
                "rine.progan2", "univfd.progan", "npr.progan4"}
    assert set(fam) == expected
    assert (scores.groupby(fam).path.nunique() == 3).all()  # every image, every detector
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert all(name in board for name in expected)


def test_issue23_pixel_roster_beside_npr_and_cnndetection(tmp_path):
    """safe, ladeda, tiny_ladeda, freqnet, fusing, gramnet, patchcraft, freqdetect, lgrad, lnp, NPR and
    CNNDetection in one run."""
    import test_pixel_roster_a as a
    import test_pixel_roster_b as b
    from test_pixel_detectors import official_shapes, random_state

    w = tmp_path / "w"
    w.mkdir()
    torch.save(a.safe_dump(a.safe_state(9)), w / "checkpoint-best.pth")
    torch.save(a.ladeda_state(10), w / "WildRF_LaDeDa.pth")
    torch.save(a.tiny_state(7), w / "ForenSynth_Tiny_LaDeDa.pth")
    torch.save(a.freqnet_state(11), w / "4-classes-freqnet-v2.pth")
    torch.save(a.trainer_dump(a.fusing_state(12)), w / "PSM.pth")
    resnet50 = random_state(official_shapes(7), 7)  # the ResNet-50 (fc 2048 -> 1) of freqdetect, lgrad and lnp
    torch.save({"netC": random_state(b.gram_shapes(), 11)}, w / "Gram.pth")
    torch.save({"netC": random_state(b.rptc_shapes(), 12)}, w / "RPTC.pth")
    freq, _, _ = b.freqdetect_files(w, resnet50)
    torch.save(b.stylegan_d_state(13), w / "D.pth")
    torch.save(resnet50, w / "LGrad.pth")
    torch.save({"state_dict": b.denoiser_state(14)}, w / "sidd_rgb.pth")
    torch.save({"model": resnet50}, w / "LNP.pth")
    dets = [f"safe@{w / 'checkpoint-best.pth'}", f"ladeda@{w / 'WildRF_LaDeDa.pth'}",
            f"tiny_ladeda@{w / 'ForenSynth_Tiny_LaDeDa.pth'}", f"freqnet@{w / '4-classes-freqnet-v2.pth'}",
            f"fusing@{w / 'PSM.pth'}", f"gramnet@{w / 'Gram.pth'}", f"patchcraft@{w / 'RPTC.pth'}",
            f"freqdetect[dct_mean={w / 'dct_mean.zip'},dct_var={w / 'dct_var.zip'}]@{freq}",
            f"lgrad[discriminator={w / 'D.pth'}]@{w / 'LGrad.pth'}", f"lnp[denoiser={w / 'sidd_rgb.pth'}]@{w / 'LNP.pth'}",
            f"npr@{npr_file(w / 'NPR.pth', 15)}", f"cnndetection@{cnndetection_file(w / 'cnn.pth', 16)}"]
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(49, 70), seed=3)
    scores = run(data, tmp_path / "out", dets)
    fam = families(scores)
    assert fam.nunique() == 12 and (scores.groupby(fam).path.nunique() == 2).all()
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert all(name in board for name in ("safe", "ladeda", "tiny_ladeda", "freqnet", "fusing", "gramnet", "patchcraft",
                                          "freqdetect", "lgrad", "lnp", "npr", "cnndetection"))


def test_issue24_hybrid_detectors_and_a_dinov2_probe_with_train(tmp_path):
    """aide, spai, cospy.sd14, cospy.progan, fatformer and probe[backbone=dinov2-tiny] (fitted on --train) in
    one run."""
    pytest.importorskip("diffusers")
    import test_hybrid_a as ha
    import test_hybrid_b as hb

    w = tmp_path / "w"
    w.mkdir()
    ha.write_aide(w / "progan_train.pth", ha.random_state(ha.aide_shapes(**ha.TINY), seed=7))
    progan = ha.write_cospy_zip(w / "progan.zip", ha.cospy_release(13))
    sd14 = ha.write_cospy_zip(w / "sd-v1_4.zip", ha.cospy_sd_release(21))
    hb.write_spai(w / "spai.pth", hb.random_state(hb.spai_shapes(**hb.TINY), 41))
    torch.save({"model": hb.fatformer_state(hb.fatformer_shapes(**hb.FF_TINY), 42)}, w / "fatformer_4class_ckpt.pth")
    # AIDE's and CO-SPY's tiny configurations hold lists, which a name's [k=v] cannot carry: --set NAME:k=v
    tiny = [a for k, v in ha.TINY.items() for a in ("--set", f"aide.progan:{k}={v}".replace(" ", ""))]
    tiny += ["--set", "clip=tiny"]
    dets = [f"aide@{w / 'progan_train.pth'}", f"spai{hb.TINY_NAME}@{w / 'spai.pth'}", f"cospy.progan@{progan}",
            f"cospy.sd14[vae=tiny]@{sd14}", f"fatformer{hb.FF_TINY_NAME}@{w / 'fatformer_4class_ckpt.pth'}",
            "probe[backbone=dinov2-tiny]"]
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(64, 64), seed=7)
    train = make_folder(tmp_path / "train", splits=("gan",), n=3, seed=8)
    scores = run(data, tmp_path / "out", dets, "--train", str(train), *tiny)
    fam = families(scores)
    assert set(fam) == {"aide.progan", "spai", "cospy.progan", "cospy.sd14", "fatformer", "probe.linear"}
    assert (scores.groupby(fam).path.nunique() == 2).all()
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert all(name in board for name in ("aide", "spai", "cospy.progan", "cospy.sd14", "fatformer", "probe"))
