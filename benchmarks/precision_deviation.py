"""How far fp16 and bf16 autocast move the backbone features and the published heads' logits from fp32.

    python benchmarks/precision_deviation.py --reference ../shared/reference              # CPU emulation
    python benchmarks/precision_deviation.py --device cuda --backbone ViT-L-14:openai      # real weights, GPU

The backbone runs once in fp32 and once under ``torch.autocast`` in each half precision (what
``--precision`` selects on CUDA; on the CPU this script calls autocast itself, which sidbench's runs never
do). Images: centre crops of generated textures, plus the reference folder's two demo photos when given;
with ``--reference`` the official UnivFD head and RINE 2-class head score the features too. The default
``ViT-L-14-quickgelu:random`` is OpenAI's architecture with seeded RANDOM weights: real weights have
larger activation outliers, so take the numbers as a lower bound of what half precision does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FEATURES = ("cls_ln2", "cls_final", "image_embed")


def images(n: int, reference: Path | None):
    """n generated 256 x 256 textures (seeded), then the reference demo photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        base = rng.normal(128, 50, (33, 33, 3))
        arr = np.kron(base, np.ones((8, 8, 1)))[:256, :256] + rng.normal(0, 12, (256, 256, 3))
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    if reference is not None:
        out += [Image.open(reference / name).convert("RGB") for name in ("aadlygmazf.jpg", "zzrybysskm.png")]
    return out


def forward(backbone, x, precision: str) -> dict:
    import torch

    from sidbench.api.backbone import autocast

    with torch.no_grad(), autocast(backbone.device, precision):
        out = backbone._forward(backbone._input(x), FEATURES)
    return {k: v.float().cpu() for k, v in out.items()}


def heads(reference: Path | None) -> dict:
    """The official heads as logit functions of the features (empty without a reference folder)."""
    if reference is None:
        return {}
    from sidbench.registry import load_detector

    import torch

    univfd = load_detector("univfd", weights=str(reference / "univfd_fc_weights.pth"))
    rine = load_detector("rine.progan2", weights=str(reference / "rine_2class_trainable.pth"))

    def scorer(det, feature):
        def score(f):
            with torch.no_grad():
                return det.score({feature: f[feature]})
        return score

    return {"univfd logit": scorer(univfd, "image_embed"), "rine.progan2 logit": scorer(rine, "cls_ln2")}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import build_backbone

    backbone = build_backbone(args.backbone, weights=args.weights, device=args.device)
    prep = make_preprocess("center_crop", backbone.info)
    x = torch.stack([prep(img) for img in images(args.images, args.reference)])
    ref = forward(backbone, x, "fp32")
    scorers = heads(args.reference)
    want = {name: f(ref) for name, f in scorers.items()}
    table: dict = {}
    for precision in ("fp16", "bf16"):
        got = forward(backbone, x, precision)
        row = {k: {"max_abs": float((got[k] - ref[k]).abs().max()),
                   "rel": float((got[k] - ref[k]).norm() / ref[k].norm())} for k in FEATURES}
        for name, f in scorers.items():
            # for a logit, "rel" is the deviation relative to the spread (std) of the fp32 logits
            row[name] = {"max_abs": float((f(got) - want[name]).abs().max()),
                         "rel": float((f(got) - want[name]).abs().max() / want[name].std())}
        table[precision] = row
    return {"backbone": backbone.identity, "device": args.device, "images": int(x.shape[0]),
            "torch": torch.__version__, "deviation_from_fp32": table}


def markdown(result: dict) -> str:
    cols = [*FEATURES, *(k for k in next(iter(result["deviation_from_fp32"].values())) if k not in FEATURES)]
    lines = ["| precision | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for precision, row in result["deviation_from_fp32"].items():
        cells = [f"{row[c]['max_abs']:.2g} ({row[c]['rel']:.1e})" for c in cols]
        lines.append(f"| {precision} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="ViT-L-14-quickgelu:random")
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=6, help="generated images (the demo photos come on top)")
    p.add_argument("--reference", type=Path, default=None, help="folder with the official heads and demo images")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args()
    result = measure(args)
    print(f"{result['backbone']} on {result['device']}, {result['images']} images, torch {result['torch']}; "
          "max |x - x_fp32| (features: relative L2 error; logits: relative to the fp32 logits' std)")
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
