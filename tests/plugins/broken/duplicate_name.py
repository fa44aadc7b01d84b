"""A plugin that reuses a built-in detector name."""
from sidbench.hookspecs import hookimpl
from sidbench.specs import DetectorSpec


@hookimpl
def sidbench_detectors():
    return [DetectorSpec(name="clip_zeroshot", factory="x:y", features=("image_embed",))]
