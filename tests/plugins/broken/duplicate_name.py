"""A plugin that reuses a built-in detector name."""
from sidbench.api import hookimpl
from sidbench.api import DetectorSpec


@hookimpl
def sidbench_detectors():
    return [DetectorSpec(name="clip_zeroshot", factory="x:y", features=("image_embed",))]
