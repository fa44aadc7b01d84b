"""JPEG decoding on the device (--decode device, sidbench.engine.decode), tested on the CPU through the same code
path (torchvision.io.decode_jpeg with device="cpu"): workers ship the bytes of plain JPEGs, the main process
decodes them in batches and applies the protocol to the tensors; everything else takes Pillow's path; the
variant is keyed apart in the feature cache and in the run's identity."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

NAMES = ("echo",)


class EchoSource:
    """A stand-in source whose output is the uint8 pixels it was given (flattened), to look at them."""

    def __new__(cls, size: int):
        from sidbench.api.backbone import BackboneInfo
        from sidbench.engine.sources import Source

        class _Echo(Source):
            name, device, precision = "echo", "cpu", "fp32"
            identity = "echo-source"
            info = BackboneInfo(name="echo", n_blocks=1, width=1, embed_dim=1, image_size=size, mean=(0.5,) * 3,
                                std=(0.5,) * 3)

            def outputs(self, pixels, names):
                return {"echo": pixels.reshape(pixels.shape[0], -1).float()}

        return _Echo()


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth, photo-like RGB image (1/f noise)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
    out = []
    for _ in range(3):
        spec = amp * np.exp(2j * np.pi * rng.random((h, w)))
        x = np.real(np.fft.ifft2(spec))
        out.append((x - x.min()) / (np.ptp(x) + 1e-9))
    return (np.stack(out, -1) * 255).astype(np.uint8)


def write_jpeg(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, "JPEG", quality=90, **kw)
    return path


def folder(root: Path) -> dict[str, Path]:
    """Test files: plain JPEGs of several sizes (smaller than the crop, odd), a greyscale one, a PNG, a CMYK
    JPEG, an EXIF-rotated JPEG and a truncated one."""
    files = {
        "big": write_jpeg(root / "0_real" / "big.jpg", photo(97, 130, 1)),
        "small": write_jpeg(root / "0_real" / "small.jpg", photo(41, 37, 2)),
        "gray": root / "1_fake" / "gray.jpg",
        "png": root / "1_fake" / "a.png",
        "cmyk": root / "1_fake" / "cmyk.jpg",
        "rotated": root / "1_fake" / "rot.jpg",
        "broken": root / "1_fake" / "broken.jpg",
    }
    files["gray"].parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(64, 80, 3)[..., 0]).save(files["gray"], "JPEG", quality=90)
    Image.fromarray(photo(50, 60, 4)).save(files["png"])
    Image.fromarray(photo(70, 66, 5)).convert("CMYK").save(files["cmyk"], "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo(60, 90, 6)).save(files["rotated"], "JPEG", quality=90, exif=exif)
    whole = io.BytesIO()
    Image.fromarray(photo(80, 80, 7)).save(whole, "JPEG", quality=90)
    files["broken"].write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    return files


def recs(files: dict[str, Path]):
    from sidbench.api.records import Record

    return [Record(str(p), int(p.parent.name == "1_fake"), "t") for p in files.values()]


class Echoed:
    """What a pass gave: pixels by path (flattened), skipped (record, reason)."""

    def __init__(self, records, protocol="center_crop", decode="cpu", cache=None, size=32, workers=0, pool=None):
        from sidbench.engine.inputs import ExtractOptions, iter_outputs

        self.pixels, self.skipped = {}, []
        opts = ExtractOptions(2, workers, False, cache=cache, decode=decode, pool=pool)
        for index, outs, skip in iter_outputs(EchoSource(size), records, NAMES, protocol=protocol, options=opts):
            for k, i in enumerate(index):
                self.pixels[records[i].path] = outs["echo"][k]
            self.skipped += [(records[i], reason) for i, reason in skip]
        self.records = [r for r in records if r.path in self.pixels]


def echo(records, protocol="center_crop", decode="cpu", cache=None) -> Echoed:
    return Echoed(records, protocol, decode, cache)


def by_path(got: Echoed) -> dict[str, torch.Tensor]:
    return got.pixels


def test_which_files_are_shipped_undecoded(tmp_path):
    from sidbench.data.preprocess import Preprocess
    from sidbench.engine.decode import ShipJpeg

    files = folder(tmp_path)
    ship = ShipJpeg(Preprocess("center_crop", 32, (0.5,) * 3, (0.5,) * 3, uint8=True))
    shipped = {k for k, p in files.items() if ship(p.read_bytes(), str(p))}
    assert shipped == {"big", "small", "gray", "broken"}  # the header of the truncated file reads fine
    assert not ship(files["big"].read_bytes(), str(tmp_path / "meta.json"))  # a sidecar is never an image


@pytest.mark.parametrize("protocol", ["center_crop", "ten_crop", "native_even"])
def test_device_decode_gives_torchvision_pixels_and_pillow_for_the_rest(tmp_path, protocol):
    """Each shipped JPEG's pixels are torchvision's decode, cropped independently here; the others (PNG, CMYK,
    EXIF-rotated) are Pillow's, exactly as with --decode cpu; the truncated JPEG is skipped with Pillow's reason."""
    from torchvision.io import ImageReadMode, decode_jpeg

    files = folder(tmp_path)
    records = recs(files)
    dev, cpu = echo(records, protocol, "device"), echo(records, protocol, "cpu")
    got, want = by_path(dev), by_path(cpu)
    assert set(got) == set(want) == {str(p) for k, p in files.items() if k != "broken"}
    assert [r.path for r, _ in dev.skipped] == [str(files["broken"])] and "truncated" in dev.skipped[0][1]
    for key in ("png", "cmyk", "rotated"):
        assert torch.equal(got[str(files[key])], want[str(files[key])])
    s = 32
    for key in ("big", "small", "gray"):
        x = decode_jpeg(torch.frombuffer(bytearray(files[key].read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB)
        h, w = x.shape[-2:]
        if protocol == "native_even":
            ref = x[:, : h - h % 2, : w - w % 2]
        else:
            big = torch.zeros(3, max(h, s), max(w, s), dtype=torch.uint8)  # zero padding, centred as torchvision
            top, left = (big.shape[1] - h + 1) // 2 if h < s else 0, (big.shape[2] - w + 1) // 2 if w < s else 0
            big[:, top:top + h, left:left + w] = x
            H, W = big.shape[-2:]
            t, l = int(round((H - s) / 2.0)), int(round((W - s) / 2.0))
            ref = big[:, t:t + s, l:l + s]
            if protocol == "ten_crop":
                tl, tr, bl, br = big[:, :s, :s], big[:, :s, W - s:], big[:, H - s:, :s], big[:, H - s:, W - s:]
                flipped = big.flip(-1)  # torchvision's ten_crop: the five crops of the mirrored image
                ref = torch.stack([tl, tr, bl, br, ref, *(c for c in (flipped[:, :s, :s], flipped[:, :s, W - s:],
                                   flipped[:, H - s:, :s], flipped[:, H - s:, W - s:], flipped[:, t:t + s, l:l + s]))])
        assert torch.equal(got[str(files[key])].view(-1), ref.reshape(-1).float()), key
        # torchvision's CPU decoder and Pillow are both libjpeg-turbo here: the same pixels (see benchmarks/RESULTS.md)
        assert torch.equal(got[str(files[key])], want[str(files[key])]), key


def test_workers_ship_the_bytes_through_the_pool(tmp_path):
    from sidbench.engine.workers import WorkerPool

    records = recs(folder(tmp_path))
    want = Echoed(records, decode="device")
    with WorkerPool() as pool:
        got = Echoed(records, decode="device", workers=2, pool=pool)
        assert pool.starts == 1
    assert got.pixels.keys() == want.pixels.keys() and [r.path for r, _ in got.skipped] == [r.path for r, _ in want.skipped]
    assert all(torch.equal(got.pixels[p], want.pixels[p]) for p in want.pixels)


def test_perturbed_and_own_protocol_passes_decode_with_pillow(tmp_path, plugins):
    from sidbench.data.perturb import parse_perturbations
    from sidbench.data.preprocess import Preprocess
    from sidbench.engine.decode import device_protocol
    from sidbench.engine.inputs import ExtractOptions, device_decoder

    records = recs(folder(tmp_path))
    pre = Preprocess("center_crop", 32, (0.5,) * 3, (0.5,) * 3, uint8=True)
    jpeg = parse_perturbations("jpeg:50", plugins)[-1]
    opts = ExtractOptions(decode="device")
    assert device_decoder(opts, pre, parse_perturbations(None, plugins)[0], None, "cpu", records) is not None
    assert device_decoder(opts, pre, jpeg, None, "cpu", records) is None
    assert device_decoder(opts, pre, parse_perturbations(None, plugins)[0], lambda *a: a, "cpu", records) is None
    assert not device_protocol(Preprocess("resize_center_crop_fast", 32, (0.5,) * 3, (0.5,) * 3, uint8=True))
    assert not device_protocol(lambda img: img)


def test_resize_protocols_on_tensors_stay_within_a_grey_level_or_two(tmp_path):
    files = folder(tmp_path)
    records = [r for r in recs(files) if Path(r.path).name in ("big.jpg", "gray.jpg")]
    for protocol in ("resize_center_crop", "resize_square"):
        got, want = by_path(echo(records, protocol, "device")), by_path(echo(records, protocol, "cpu"))
        for path in want:
            assert got[path].shape == want[path].shape
            assert (got[path].int() - want[path].int()).abs().max() <= 2


def test_device_decoded_features_are_cached_apart(tmp_path):
    from sidbench.engine.cache import FeatureCache

    records = recs(folder(tmp_path))
    cache = FeatureCache(tmp_path / "cache")
    echo(records, "center_crop", "cpu", cache=cache)
    cache.hits = 0
    echo(records, "center_crop", "device", cache=cache)
    assert cache.hits == 0  # a CPU-decoded entry never serves the device variant
    again = echo(records, "center_crop", "device", cache=cache)
    assert cache.hits == len(again.records)
    cache.close()


def test_run_identity_records_the_decode_and_a_resume_never_mixes(tmp_path):
    from sidbench.run.config import RunConfig

    assert RunConfig(device="cpu").numerics() == RunConfig(device="cpu", decode="cpu").numerics() == "cpu-fp32"
    assert RunConfig(device="cpu", decode="device").numerics() == "cpu-fp32+jpeg@cpu"
    assert RunConfig(device="cpu").identity() != RunConfig(device="cpu", decode="device").identity()
    from sidbench.api.errors import SidbenchError

    with pytest.raises(SidbenchError, match="decode must be one of auto, cpu, device"):
        RunConfig(decode="gpu")


def test_cli_resume_with_another_decode_is_refused(tmp_path):
    files = folder(tmp_path / "data" / "t")
    for k in ("broken", "cmyk", "rotated"):
        files[k].unlink()
    out = tmp_path / "out"
    base = [sys.executable, "-m", "sidbench", "run", "--data", str(tmp_path / "data"), "--backbone", "clip-tiny",
            "--detectors", "clip_zeroshot", "--device", "cpu", "--out", str(out), "--no-progress", "--batch-size", "2"]
    first = subprocess.run([*base, "--decode", "device"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    run_json = (out / "run.json").read_text()
    assert "cpu-fp32+jpeg@cpu" in run_json
    again = subprocess.run(base, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode != 0 and "differs in: numerics" in again.stderr and "Traceback" not in again.stderr


def test_auto_decodes_on_cuda_only_where_torchvision_can(monkeypatch):
    from sidbench.engine import decode

    assert decode.resolve_decode("auto", "cpu") == decode.resolve_decode(None, "cpu") == "cpu"
    assert decode.resolve_decode("device", "cpu") == "device" and decode.resolve_decode("cpu", "cuda:1") == "cpu"
    monkeypatch.setattr(decode, "device_decode_works", lambda device: device == "cuda:1")
    assert decode.resolve_decode("auto", "cuda:1") == "device" and decode.resolve_decode("auto", "cuda:0") == "cpu"
    assert decode.decode_variant("device", "cuda:1") == "jpeg@cuda" and decode.decode_variant("cpu", "cuda") == ""


def test_a_decoder_warning_of_damage_sends_that_file_to_pillow(tmp_path, monkeypatch):
    import warnings

    import torchvision.io

    from sidbench.data.preprocess import Preprocess
    from sidbench.engine.decode import DeviceDecoder
    from sidbench.engine.loader import Batch

    files = folder(tmp_path)
    records = recs(files)[:2]  # big.jpg, small.jpg
    data = [Path(r.path).read_bytes() for r in records]
    real = torchvision.io.decode_jpeg

    def warns_on_small(batch, **kw):
        items = batch if isinstance(batch, list) else [batch]
        if any(bytes(x.numpy()) == data[1] for x in items):
            warnings.warn("Corrupt JPEG data: 12 extraneous bytes before marker 0xd9")
        return real(batch, **kw)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", warns_on_small)
    pre = Preprocess("center_crop", 32, (0.5,) * 3, (0.5,) * 3, uint8=True)
    decoder = DeviceDecoder(pre, "cpu", records)
    batch = decoder(Batch([], None, [], encoded={0: data[0], 1: data[1]}))
    assert batch.index == [0, 1] and batch.pixels.shape == (2, 3, 32, 32) and not batch.skipped
    assert decoder.decoded == 1 and decoder.fallbacks == 1  # the warned-about file took Pillow's path
