"""The device pipeline (issue 25): the download of a batch's outputs is queued before the next batch is
launched and waited for after it (real overlap), workers send uint8 pixels normalised where the network
runs (bit-identical to normalising on the host), and the per-chunk head pass syncs once."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sidbench.api.backbone import network_input
from sidbench.data.preprocess import PROTOCOLS, make_preprocess
from sidbench.engine import inputs
from sidbench.engine.inputs import _Pending
from sidbench.engine.sources import Source


class _Info:
    image_size, mean, std = 32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_uint8_pixels_normalised_on_the_device_side_equal_host_normalisation(protocol):
    rng = np.random.default_rng(0)
    for size in ((40, 52), (17, 23), (64, 64)):
        img = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        host = make_preprocess(protocol, _Info())(img)
        raw = make_preprocess(protocol, _Info(), uint8=True)(img)
        assert raw.dtype == torch.uint8 and raw.shape == host.shape
        assert torch.equal(network_input(raw, _Info.mean, _Info.std, "cpu"), host)
    floats = torch.randn(2, 3, 4, 4)
    assert network_input(floats, _Info.mean, _Info.std, "cpu") is floats  # already normalised: unchanged


class _RecordingSource(Source):
    """Stands in for a device: logs when a batch is launched; HostCopy is replaced to log copy and wait."""

    device, precision, max_batch_pixels, info = "cuda:0", "fp32", None, _Info()

    def __init__(self, log):
        self.log, self.n = log, 0

    def outputs(self, pixels, names):
        k, self.n = self.n, self.n + 1
        self.log.append(("launch", k))
        return {n: torch.full((pixels.shape[0], 2), float(k)) for n in names}


def test_a_batch_is_downloaded_before_the_next_is_launched_and_waited_for_after(monkeypatch):
    log = []

    class FakeCopy:
        def __init__(self, k):
            self.k = k

        @staticmethod
        def start(out, rows):
            k = int(next(iter(out.values()))[0, 0])
            log.append(("copy", k))
            return {n: v[:rows] for n, v in out.items()}, FakeCopy(k)

        def wait(self):
            log.append(("wait", self.k))

    monkeypatch.setattr(inputs, "HostCopy", FakeCopy)
    from sidbench.engine.loader import Batch

    pending = _Pending(_RecordingSource(log), ("f",), 1, 4, None, False)
    for b in range(3):
        pending.add(Batch(list(range(4 * b, 4 * b + 4)), torch.zeros(4, 3, 2, 2, dtype=torch.uint8), []))
        while (shape := pending.ready()) is not None:
            for index, out, _ in pending.submit(shape):
                assert out["f"].shape == (4, 2)
    pending.submit(None)
    pos = {e: i for i, e in enumerate(log)}
    for k in range(2):
        assert pos[("copy", k)] < pos[("launch", k + 1)] < pos[("wait", k)], log
    assert pos[("wait", 2)] > pos[("launch", 2)]


def test_head_logits_leave_the_finite_check_to_the_caller():
    from sidbench.engine.scoring import head_logits

    class Det:
        input, device, name, required_features = "features", "cpu", "d", ("f",)

        def score(self, feats):
            return feats["f"][:, 0] * float("nan")

    out = head_logits(Det(), {"f": torch.ones(3, 2)}, check=False)
    assert out.shape == (3,) and torch.isnan(out).all()
    from sidbench.api.errors import SidbenchError

    with pytest.raises(SidbenchError, match="NaN"):
        head_logits(Det(), {"f": torch.ones(3, 2)})


def test_oom_backoff_frees_the_failed_attempt_then_halves_and_counts():
    import gc
    import weakref

    from sidbench.engine.sources import DeviceMemoryError, with_oom_backoff

    alive = []  # weak references to the activations of every failed attempt

    def fn(x):
        for ref in alive:  # a retry runs only once the failed attempts' tensors are gone
            gc.collect()
            assert ref() is None, "the failed attempt's activations are still alive during the retry"
        act = torch.empty(x.shape[0], 1000)
        if x.shape[0] > 2:
            alive.append(weakref.ref(act))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return {"f": x[:, :1] * 2}

    halvings = [0]
    x = torch.arange(8.0)[:, None].repeat(1, 3)
    out = with_oom_backoff(fn, x, halvings)
    assert torch.equal(out["f"], x[:, :1] * 2) and halvings[0] == 3  # 8 -> 4+4 -> 2+2+2+2

    def never(x):
        raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(DeviceMemoryError, match="does not fit"):
        with_oom_backoff(never, torch.zeros(1, 3))


def test_an_image_too_large_for_the_device_is_skipped_and_a_halved_batch_is_not_cached():
    from sidbench.engine.loader import Batch
    from sidbench.engine.sources import DeviceMemoryError

    class Source(_RecordingSource):
        def outputs(self, pixels, names):
            if pixels.shape[-1] > 2:
                raise DeviceMemoryError("an input of shape (3, 9, 9) does not fit")
            self.oom_halvings[0] += 1  # as if with_oom_backoff had halved this batch
            return {n: torch.zeros(pixels.shape[0], 2) for n in names}

    class Cache:
        writable, stored = True, []

        def store(self, *a):
            self.stored.append(a)

    class Lookup:
        cache, context = Cache(), type("C", (), {"backbone": "b"})

    pending = _Pending(Source([]), ("f",), 1, 2, Lookup(), True)
    pending.add(Batch([0, 1], [torch.zeros(3, 9, 9, dtype=torch.uint8), torch.zeros(3, 2, 2, dtype=torch.uint8)], []))
    pending.keys = {0: {"f": "k0"}, 1: {"f": "k1"}}
    results = []
    while (shape := pending.next_shape()) is not None:
        results += pending.submit(shape)
    results += pending.submit(None)
    skipped = [s for _, _, skip in results for s in skip]
    assert skipped and skipped[0][0] == 0 and "does not fit" in skipped[0][1]
    assert [i for index, _, _ in results for i in index] == [1]
    assert Cache.stored == []  # the halved batch's outputs are not cached under the full batch's key


def test_every_rank_gets_its_local_gpu_whatever_device_index_was_given(monkeypatch):
    from sidbench.run.distributed import Dist

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert Dist(rank=3, world=4, local_rank=1).device("cuda:0") == "cuda:1"
    assert Dist(rank=0, world=4, local_rank=0).device("cuda") == "cuda:0"
    assert chosen == [1, 0]
    assert Dist().device("cuda:0") == "cuda:0" and Dist(rank=1, world=2, local_rank=1).device("cpu") == "cpu"


def test_a_compiled_backbone_builds_one_graph_for_every_feature_set(monkeypatch):
    """torch.compile with a counting eager backend: asking for other features, or the same batch shape again,
    compiles nothing new (fixed batch shapes are the engine's padding)."""
    from sidbench.backbones.clip import build_tiny

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=counting, dynamic=False))
    torch._dynamo.reset()
    bb = build_tiny().compile()
    x = torch.randint(0, 256, (4, 3, bb.info.image_size, bb.info.image_size), dtype=torch.uint8)
    a = bb.features(x, ("cls_ln2",))
    b = bb.features(x, ("image_embed", "cls_final"))
    c = bb.features(x, ("cls_ln2", "cls_blocks", "cls_final", "image_embed"))
    assert len(graphs) == 1, f"{len(graphs)} graphs"
    assert set(a) == {"cls_ln2"} and set(b) == {"image_embed", "cls_final"} and torch.equal(a["cls_ln2"], c["cls_ln2"])
    torch._dynamo.reset()


def test_a_resume_on_other_numerics_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from conftest import make_folder

    from sidbench.cli import main
    from sidbench.run.config import RunConfig

    data = make_folder(tmp_path / "d", splits=("a",), n=2)
    args = ["run", "--data", str(data), "--detectors", "clip_zeroshot", "--backbone", "clip-tiny", "--no-progress",
            "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert RunConfig(device="cpu", precision="bf16").numerics() == "cpu-fp32"  # the CPU always runs fp32
    monkeypatch.setattr(RunConfig, "numerics", lambda self: "cuda-bf16")  # as if resumed on a GPU in bf16
    capsys.readouterr()
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert "numerics" in err and "--overwrite" in err and len(err.splitlines()) == 1
