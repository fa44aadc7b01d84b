"""A working plugin file: adds one detector."""
from sidbench.api import Detector
from sidbench.api import hookimpl
from sidbench.api import DetectorSpec

__version__ = "1.2.3"


class MeanEmbed(Detector):
    def score(self, features):
        return features["image_embed"].float().mean(dim=-1)


@hookimpl
def sidbench_detectors():
    return [DetectorSpec(name="mean_embed", factory=MeanEmbed, features=("image_embed",), description="mean of the embedding")]
