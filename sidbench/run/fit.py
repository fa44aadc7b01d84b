"""Stage 2 of a run, fitting: every detector that needs it is fitted on the training records (detectors on one
backbone share one FitData) and saved under ``checkpoints/``, or reloaded from there when an interrupted run of
the same command already fitted it; with what each was trained on, for its checkpoint and run.json."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..api.errors import FitRequiredError, SidbenchError
from ..api.paths import written_by_sidbench
from ..api.records import Record
from .build import RunContext, SourcePool
from .config import RunData

if TYPE_CHECKING:
    from ..api.detector import Detector
    from .distributed import Dist


def fit_all(ctx: RunContext, detectors: Sequence["Detector"]) -> None:
    """Fit (or reload from this folder's checkpoints) every detector that needs it; detectors on one
    backbone share one FitData, so each split and view passes the backbone once for all of them."""
    from ..engine.fitting import EngineFitData

    todo = []
    for det in detectors:
        if det.fitted:
            continue
        ckpt = earlier_checkpoint(ctx.out, det)
        if ckpt is not None and not same_code(det, ckpt):
            ctx.log(f"{det.name}: its code changed since the earlier run fitted {ckpt}; fitting it again")
        elif ckpt is not None:  # fitted by an earlier, interrupted run of the same command
            det.load(str(ckpt))
            note_training(det, ctx.data.train, ctx.cfg.train)
            det.fitted_in_run = True
            ctx.log(f"{det.name}: loaded the checkpoint fitted by the earlier run ({ckpt})")
            continue
        todo.append(det)
    shared: dict[str, EngineFitData] = {}
    for det in todo:
        key = SourcePool.key(det, ctx.cfg)
        if key not in shared:
            same = [d for d in todo if SourcePool.key(d, ctx.cfg) == key]
            shared[key] = fit_data_for(ctx, det, same)
        t = time.time()
        fit_and_save(ctx, det, shared[key].with_protocol(det.preprocess))
        ctx.timings[f"fit {det.name}"] = round(time.time() - t, 3)


def check_fittable(detectors: Sequence["Detector"], data: RunData, out: Path) -> None:
    """Every detector that needs fitting has training data or a checkpoint (checked before ``out`` is touched)."""
    for det in detectors:
        if not det.fitted and not data.train and earlier_checkpoint(out, det) is None:
            raise FitRequiredError(
                f"detector {det.name!r} must be fitted: give --train PATH (and --val PATH), "
                f"or a checkpoint with --detectors {det.name}@CHECKPOINT"
            )


def check_fitted_for_torchrun(detectors: Sequence["Detector"], out: Path, dist: "Dist") -> None:
    """Under torchrun every detector comes fitted (a checkpoint, or one an earlier run saved in ``out``): fitting
    is a one-process job, done before the scoring job."""
    need = [d.name for d in detectors if not d.fitted and earlier_checkpoint(out, d) is None]
    if dist.active and need:
        names = ",".join(need)
        raise FitRequiredError(
            f"detector(s) {names} need fitting, which torchrun does not do: fit first with `sidbench train NAME "
            f"--data TRAIN --out CKPT` or `sidbench run --train` on one process, then attach the checkpoint "
            f"(--detectors {need[0]}@CKPT)")


def same_code(det: "Detector", ckpt: Path) -> bool:
    """Whether ``ckpt`` was saved by this detector's code (a checkpoint without a code record: assumed so)."""
    from ..api.checkpoints import read_metadata
    from ..api.code import code_identity

    saved = read_metadata(ckpt).get("code")
    return not isinstance(saved, dict) or saved.get("source_sha256") == code_identity(det)["source_sha256"]


def checkpoint_path(out: Path, det: "Detector") -> Path:
    """Where a detector fitted during the run is saved (and found again on resume)."""
    return out / "checkpoints" / f"{det.name}.safetensors"


def epoch_state_path(out: Path, det: "Detector") -> Path:
    """Where an epoch loop keeps its state while ``det`` is being fitted (removed once its checkpoint is saved)."""
    return out / "checkpoints" / f"{det.name}.epoch-state.pt"


def earlier_checkpoint(out: Path, det: "Detector") -> Path | None:
    """The checkpoint an earlier, interrupted run of this command fitted for ``det`` in ``out``, if any."""
    ckpt = checkpoint_path(out, det)
    return ckpt if ckpt.exists() and written_by_sidbench(ckpt) else None


def fit_data_for(ctx: RunContext, det: "Detector", group: Sequence["Detector"]):
    """The FitData of ``group`` (detectors on one source): the union of their features under each protocol is
    extracted at once."""
    from ..engine.fitting import EngineFitData
    from ..engine.scoring import source_outputs

    common = dict(protocol=det.preprocess, seed=ctx.cfg.seed, options=ctx.options, device=ctx.pool.device,
                  val_cache=ctx.val_cache)
    if det.input == "pixels":
        return EngineFitData(ctx.data.train, ctx.data.val, pixels=det.pixel_input, **common)
    names: dict[str, set[str]] = {}  # per protocol: a resize-protocol fit need not carry RINE's cls_ln2
    for d in group:
        names.setdefault(d.preprocess, set()).update(source_outputs(d))
    along = {p: tuple(sorted(v)) for p, v in names.items()}
    return EngineFitData(ctx.data.train, ctx.data.val, backbone=ctx.pool.source(det), names=along, **common)


def fit_and_save(ctx: RunContext, det: "Detector", data) -> None:
    """Fit ``det`` on ``data`` (resuming its epoch loop where an interrupted run left it) and save its checkpoint;
    a fit that gave NaN or Inf weights is an error, and nothing is saved."""
    from ..api.checkpoints import non_finite_tensor
    from ..api.fitting import EpochState
    from ..engine.fitting import fit_detector, fit_key

    state = EpochState(epoch_state_path(ctx.out, det), fit_key(det, ctx.data.train, ctx.cfg.seed, ctx.cfg.digest()))
    summary, seconds = fit_detector(det, data, ctx.cfg.seed, log=lambda m, d=det: ctx.log(f"{d.name}: {m}"), state=state)
    bad = non_finite_tensor(det.state_dict())
    if bad is not None:  # a diverged fit is not saved, so the next run fits again instead of loading it
        raise SidbenchError(f"fitting detector {det.name!r} gave NaN or Inf weights ({bad}); lower its learning rate "
                            "or check the training data")
    note_training(det, ctx.data.train, ctx.cfg.train)
    det.fitted_in_run = True
    det.save(str(checkpoint_path(ctx.out, det)))
    state.clear()
    ctx.log(f"{det.name}: fitted in {seconds:.1f}s {summary or ''}".rstrip())


def generators(records: Sequence[Record]) -> list[str]:
    """The generators a detector fitted on these records saw (recorded as its training data)."""
    return sorted({r.generator for r in records if r.label == 1 and r.generator})


def note_training(det: "Detector", records: Sequence[Record], roots: Any) -> None:
    """What ``det`` was fitted on, for its checkpoint and run.json: the generators (the leaderboard's
    seen-in-training marks), the splits, the roots given and the counts of reals and fakes."""
    det.trained_on = generators(records)
    det.training = {"generators": det.trained_on, "splits": sorted({r.split for r in records}),
                    "roots": [str(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots or [])],
                    "n_real": sum(r.label == 0 for r in records), "n_fake": sum(r.label == 1 for r in records)}
