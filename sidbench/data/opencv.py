"""OpenCV decoding for detectors whose official test code reads images with ``cv2.imread`` (Effort, DRCT).

``cv2.imread(path)`` (``IMREAD_COLOR``) gives 8-bit BGR with the EXIF orientation applied; ``cv2.imdecode``
of the same bytes gives the same array, so a protocol with ``reads_file=True`` decodes the file's bytes
exactly as the official script would. A perturbed image has no file bytes: its PIL pixels are used. A file
OpenCV cannot decode falls back to the PIL image (as DeepfakeBench's loader falls back to PIL).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sidbench.api import ImageInput


def decode_rgb(item: "ImageInput") -> "np.ndarray":
    """[H, W, 3] uint8 RGB: ``cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)`` from the file's bytes when
    the image is the file as read, else the (perturbed) PIL image's pixels."""
    import cv2
    import numpy as np

    if item.data is not None:
        bgr = cv2.imdecode(np.frombuffer(item.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(np.asarray(item.image.convert("RGB"), dtype=np.uint8))


def to_normalised_tensor(rgb: "np.ndarray", mean: tuple, std: tuple) -> "torch.Tensor":
    """[3, H, W] float32: ``ToTensor`` (divide by 255) then ``Normalize(mean, std)``, as torchvision does."""
    import torch

    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (x - m) / s
