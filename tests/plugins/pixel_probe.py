"""A pixel test detector: its own tiny network on native-resolution pixels, fitted with data.batches."""
from sidbench.api import Detector, DetectorSpec, PixelInput, hookimpl

CALLS = []  # (batch size, height, width) of every forward, for the tests


class CheckerProbe(Detector):
    """logit = w * mean |x - shift(x)| + b: a 2x2 high-pass energy (the test images' fakes carry a checkerboard)."""

    def __init__(self, spec, backbone, **options):
        super().__init__(spec, backbone, **options)
        import torch

        self.head = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.head.weight.fill_(1.0)
            self.head.bias.fill_(-1.0)

    def modules(self):
        return {"head": self.head}

    def energy(self, x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))[:, None]

    def score(self, features):
        x = features["pixels"]
        CALLS.append(tuple(x.shape[:1]) + tuple(x.shape[-2:]))
        return self.head(self.energy(x)).squeeze(-1)

    def fit(self, data, log=print):
        import torch

        opt = torch.optim.Adam(self.head.parameters(), lr=0.1)
        for epoch in range(self.options["epochs"]):
            for inputs, labels in data.batches("train", batch_size=4, epoch=epoch):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(self.score(inputs), labels)
                opt.zero_grad()
                loss.backward()
                opt.step()
        logits, y = data.scores(self, "val") if data.has_val else data.scores(self, "train")
        acc = float(((logits > 0) == (y > 0.5)).mean())
        log(f"accuracy {acc:.3f}")
        return {"acc": acc}


@hookimpl
def sidbench_detectors():
    return [
        DetectorSpec(name="checker_probe", factory=CheckerProbe, preprocess="native", pixels=PixelInput(image_size=64),
                     options={"epochs": 3}, description="pixel test detector (native resolution)"),
        DetectorSpec(name="checker_probe.fit", factory=CheckerProbe, preprocess="center_crop", needs_fit=True,
                     pixels=PixelInput(image_size=64), options={"epochs": 3},
                     description="pixel test detector fitted on 64 px centre crops"),
    ]
