"""A pixel test detector with protocols of its own: one reads the file's bytes (its length and first byte),
one feeds two views (the image and its mirror) whose logits the engine averages."""
from sidbench.api import Detector, DetectorSpec, PixelInput, ProtocolSpec, hookimpl


class BytesInput:
    """[3, 2, 2]: the file's length in KiB and its first byte, or -1 when the image was perturbed."""

    def __init__(self, info):
        self.info = info

    def __call__(self, item):
        import torch

        n, first = (len(item.data) / 1024.0, float(item.data[0])) if item.data is not None else (-1.0, -1.0)
        return torch.tensor([n, first, 0.0, 0.0]).reshape(1, 2, 2).repeat(3, 1, 1)


class TwoViews:
    def __init__(self, info):
        self.size = info.image_size

    def __call__(self, item):
        import torch
        import torchvision.transforms.functional as TF

        x = TF.to_tensor(TF.center_crop(item.image, self.size))
        return torch.stack([x, x.flip(-1) * 0.5])


class ByteProbe(Detector):
    def score(self, features):
        x = features["pixels"]
        return x[:, 0, 0, 0] + x[:, 0, 0, 1] if x.shape[-1] == 2 else x[:, 0].mean(dim=(1, 2))


PROTOCOLS = (ProtocolSpec("file_bytes", BytesInput, "the file's length and first byte", reads_file=True),
             ProtocolSpec("two_views", TwoViews, "centre crop and its dimmed mirror", views=2))


@hookimpl
def sidbench_detectors():
    return [DetectorSpec(name="byte_probe", factory=ByteProbe, preprocess="file_bytes",
                         pixels=PixelInput(image_size=16, protocols=PROTOCOLS), description="reads file bytes")]
