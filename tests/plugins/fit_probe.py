"""A fittable test detector: least-squares probe on image_embed (exercises fit, save, load, resume)."""
from sidbench.api import Detector
from sidbench.api import hookimpl
from sidbench.api import DetectorSpec


class LstsqProbe(Detector):
    def __init__(self, spec, backbone, **options):
        super().__init__(spec, backbone, **options)
        import torch

        self.head = torch.nn.Linear(backbone.embed_dim, 1)
        self.fit_calls = 0

    def modules(self):
        return {"head": self.head}

    def score(self, features):
        return self.head(features["image_embed"]).squeeze(-1)

    def fit(self, data, log=print):
        import torch

        self.fit_calls += 1
        fs = data.features("train", ("image_embed",))
        x = torch.cat([fs.features["image_embed"], torch.ones(len(fs), 1)], dim=1)
        y = fs.labels * 2 - 1
        w = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
        with torch.no_grad():
            self.head.weight.copy_(w[:-1][None])
            self.head.bias.copy_(w[-1:])
        log(f"fitted on {len(fs)} images")
        return {"n": len(fs)}


@hookimpl
def sidbench_detectors():
    return [DetectorSpec(name="lstsq_probe", factory=LstsqProbe, features=("image_embed",), needs_fit=True,
                         preprocess="center_crop", description="least-squares probe (test plugin)")]
