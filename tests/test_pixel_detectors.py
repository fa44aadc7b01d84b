"""CNNDetection, NPR and Corvi 2023 against their official architectures.

Each test writes a checkpoint in the official file format (seeded random weights under the official key
names and shapes, saved the way the official training code saves it), loads it through sidbench, and
compares the logits with a forward pass written here from the official code with plain
``torch.nn.functional`` calls on the state dict (no torchvision, no sidbench network code).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidbench.api import DataError, WeightsError

STAGES = ((1, 3, 64), (2, 4, 128), (3, 6, 256), (4, 3, 512))  # (layer, blocks, planes) of ResNet-50


# -- official key names and shapes (research notes: CNNDetection networks/resnet.py, NPR networks/resnet.py) --
def official_shapes(stem_kernel: int, stages=STAGES, head: str = "fc", head_in: int = 2048) -> dict[str, tuple]:
    """Key -> shape of a torchvision-style ResNet state dict with Bottleneck stages."""
    shapes: dict[str, tuple] = {"conv1.weight": (64, 3, stem_kernel, stem_kernel)}
    shapes.update(_bn("bn1", 64))
    inplanes = 64
    for layer, blocks, p in stages:
        for b in range(blocks):
            pre = f"layer{layer}.{b}"
            cin = inplanes if b == 0 else 4 * p
            shapes[f"{pre}.conv1.weight"] = (p, cin, 1, 1)
            shapes.update(_bn(f"{pre}.bn1", p))
            shapes[f"{pre}.conv2.weight"] = (p, p, 3, 3)
            shapes.update(_bn(f"{pre}.bn2", p))
            shapes[f"{pre}.conv3.weight"] = (4 * p, p, 1, 1)
            shapes.update(_bn(f"{pre}.bn3", 4 * p))
            if b == 0:
                shapes[f"{pre}.downsample.0.weight"] = (4 * p, cin, 1, 1)
                shapes.update(_bn(f"{pre}.downsample.1", 4 * p))
        inplanes = 4 * p
    shapes[f"{head}.weight"] = (1, head_in)
    shapes[f"{head}.bias"] = (1,)
    return shapes


def _bn(prefix: str, n: int) -> dict[str, tuple]:
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")} | \
        {f"{prefix}.num_batches_tracked": ()}


def random_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with sane scales (He-scaled convs, BN statistics near 1) so logits stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1234, dtype=torch.int64)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("running_mean") or k.endswith(".bias"):
            out[k] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN weight
            out[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:]))
            out[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return out


def trainer_dump(state: dict[str, torch.Tensor]) -> dict:
    """What CNNDetection's ``BaseModel.save_networks`` writes: model, an Adam state dict, total_steps."""
    params = [torch.nn.Parameter(v.clone()) for k, v in state.items() if v.is_floating_point()][:3]
    opt = torch.optim.Adam(params, lr=1e-4)
    sum(p.sum() for p in params).backward()
    opt.step()
    return {"model": state, "optimizer": opt.state_dict(), "total_steps": 4501}


# -- the official forward passes, on the state dict ----------------------------------------------------------
def bn(sd, prefix, x):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], training=False, eps=1e-5)


def bottleneck(sd, pre, x, stride):
    """Bottleneck of the official resnet.py files: 1x1, 3x3 (carrying the stride), 1x1, projection shortcut."""
    out = F.relu(bn(sd, f"{pre}.bn1", F.conv2d(x, sd[f"{pre}.conv1.weight"])))
    out = F.relu(bn(sd, f"{pre}.bn2", F.conv2d(out, sd[f"{pre}.conv2.weight"], stride=stride, padding=1)))
    out = bn(sd, f"{pre}.bn3", F.conv2d(out, sd[f"{pre}.conv3.weight"]))
    if f"{pre}.downsample.0.weight" in sd:
        x = bn(sd, f"{pre}.downsample.1", F.conv2d(x, sd[f"{pre}.downsample.0.weight"], stride=stride))
    return F.relu(out + x)


def stages(sd, x, stages=STAGES):
    for layer, blocks, _ in stages:
        for b in range(blocks):
            x = bottleneck(sd, f"layer{layer}.{b}", x, 2 if (b == 0 and layer > 1) else 1)
    return x


def cnndetection_reference(sd, x):
    x = F.relu(bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = stages(sd, F.max_pool2d(x, 3, 2, 1))
    return (x.mean(dim=(2, 3)) @ sd["fc.weight"].T + sd["fc.bias"])[:, 0]


def npr_reference(sd, x):
    # NPR[c, 2i+a, 2j+b] = x[c, 2i+a, 2j+b] - x[c, 2i, 2j]: each 2x2 block minus its top-left pixel
    top_left = x[:, :, ::2, ::2].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    y = F.conv2d((x - top_left) * 2.0 / 3.0, sd["conv1.weight"], stride=2, padding=1)
    y = stages(sd, F.max_pool2d(F.relu(bn(sd, "bn1", y)), 3, 2, 1), STAGES[:2])
    return (y.mean(dim=(2, 3)) @ sd["fc1.weight"].T + sd["fc1.bias"])[:, 0]


def corvi_reference(sd, x):
    x = F.relu(bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=1, padding=3)))
    x = stages(sd, F.max_pool2d(x, 3, 1, 1))
    logit_map = torch.einsum("bchw,c->bhw", x, sd["fc.weight"][0]) + sd["fc.bias"][0]  # ChannelLinear per position
    return logit_map.mean(dim=(1, 2))  # main.py: np.mean over the logit map


def pixels(seed: int, size=(48, 40), n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def score(name, path, x, plugins):
    from sidbench.registry import load_detector

    det = load_detector(name, weights=str(path), plugins=plugins)
    with torch.no_grad():
        return det.score({"pixels": x})


# -- the tests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True])
def test_cnndetection_official_checkpoint_gives_the_official_logits(tmp_path, plugins, legacy):
    sd = random_state(official_shapes(7), seed=1)
    assert len(sd) == 320  # the official file's entry count
    path = tmp_path / "blur_jpg_prob0.5.pth"
    torch.save(trainer_dump(sd), path, _use_new_zipfile_serialization=not legacy)  # 2020 files: legacy format
    x = pixels(2, (64, 56))
    got = score("cnndetection", path, x, plugins)
    torch.testing.assert_close(got, cnndetection_reference(sd, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["npr_pth", "bare"])
def test_npr_official_checkpoints_give_the_official_logits(tmp_path, plugins, layout):
    sd = random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), seed=3)
    assert len(sd) == 146
    path = tmp_path / "ckpt.pth"
    if layout == "npr_pth":  # NPR.pth: a DataParallel model inside a training dump
        torch.save(trainer_dump({f"module.{k}": v for k, v in sd.items()}), path)
    else:  # model_epoch_last_3090.pth: save_networks writes model.state_dict() itself
        torch.save(sd, path)
    x = pixels(4, (64, 48))
    got = score("npr", path, x, plugins)
    torch.testing.assert_close(got, npr_reference(sd, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_corvi2023_official_checkpoint_gives_the_official_logits(tmp_path, plugins, prefix):
    sd = random_state(official_shapes(7), seed=5)
    path = tmp_path / "model_epoch_best.pth"
    torch.save(trainer_dump({prefix + k: v for k, v in sd.items()}), path)
    x = pixels(6, (40, 48))
    got = score("corvi2023.progan", path, x, plugins)
    torch.testing.assert_close(got, corvi_reference(sd, x), rtol=1e-4, atol=1e-4)


def test_npr_refuses_odd_sizes_and_native_even_drops_the_odd_edge(tmp_path, plugins):
    from PIL import Image

    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import load_detector

    det = load_detector("npr.aigcbench", plugins=plugins)
    with pytest.raises(DataError, match="native_even"):
        det.score({"pixels": pixels(0, (33, 32))})
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (33, 47, 3), dtype=np.uint8))
    x = make_preprocess("native_even", det.pixel_input)(img)
    ref = (torch.from_numpy(np.array(img)[:32, :46]).permute(2, 0, 1) / 255.0 - torch.tensor(
        det.pixel_input.mean)[:, None, None]) / torch.tensor(det.pixel_input.std)[:, None, None]
    torch.testing.assert_close(x, ref.float())


def test_resize_square_is_a_square_bilinear_resize(plugins):
    from PIL import Image

    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import load_detector

    info = load_detector("npr", plugins=plugins).pixel_input
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 200, 3), dtype=np.uint8))
    x = make_preprocess("resize_square", info)(img)
    ref = np.asarray(img.resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0  # PIL, as Resize((256, 256))
    ref = (ref - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_checkpoints_of_another_family_or_with_pickled_objects_are_refused(tmp_path, plugins):
    from sidbench.registry import load_detector

    npr = tmp_path / "NPR.pth"
    torch.save(random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 0), npr)
    with pytest.raises(WeightsError, match="does not fit"):
        load_detector("cnndetection", weights=str(npr), plugins=plugins)
    pickled = tmp_path / "with_options.pth"
    dump = trainer_dump(random_state(official_shapes(7), 0))
    torch.save({**dump, "opt": argparse.Namespace(lr=1e-4)}, pickled)
    with pytest.raises(WeightsError, match="refused to load.*convert it once.*weights_only=False") as err:
        load_detector("cnndetection", weights=str(pickled), plugins=plugins)
    message = str(err.value)
    assert "\n" not in message
    command, converted = re.search(r"convert it once to plain tensors: (.*) \(then use (.*)\)$", message).groups()
    import shlex

    args = shlex.split(command)
    assert args[0] == "python"
    subprocess.run([sys.executable, *args[1:]], check=True)  # the suggested conversion works as printed
    converted = shlex.split(converted)[0]
    assert load_detector("cnndetection", weights=converted, plugins=plugins).fitted


def test_specs_carry_metadata_and_published_weights(plugins):
    for name in ("cnndetection.prob05", "cnndetection.prob01", "npr.progan4", "npr.aigcbench", "corvi2023.ldm",
                 "corvi2023.progan"):
        spec = plugins.detector(name)
        assert spec.input == "pixels" and spec.paper and spec.license and spec.training_data
        assert spec.official_weights is not None and spec.official_weights.url.startswith("https://")
    assert plugins.detector("cnndetection").name == "cnndetection.prob05"
    assert plugins.detector("corvi2023").name == "corvi2023.ldm"
    assert plugins.detector("npr").preprocess == "resize_square"


def test_cnndetection_takes_an_initialisation_file_as_its_error_message_says(tmp_path, plugins):
    """`--set pretrained=PATH` (the fix the offline error suggests) passes the option check and loads the file."""
    from safetensors.torch import save_file

    from sidbench.api.options import check_options
    from sidbench.nets.resnet import imagenet_resnet50 as imagenet_state

    spec = plugins.detector("cnndetection")
    check_options(spec, {"pretrained": str(tmp_path / "resnet50.safetensors")})
    check_options(spec, {"pretrained": False})
    save_file({"fc.weight": torch.ones(1000, 2048)}, str(tmp_path / "resnet50.safetensors"))
    state = imagenet_state(str(tmp_path / "resnet50.safetensors"), log=lambda m: None)
    assert torch.equal(state["fc.weight"], torch.ones(1000, 2048))
