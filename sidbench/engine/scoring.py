"""Scoring: source outputs -> detector logits -> score rows. The one place for head padding and
multi-crop averaging; used by ``sidbench run``, ``sidbench score``, fitting (validation) and the studies.

Detectors that share a source and protocol share one source pass per image. The records are cut
into fixed chunks of ``batch_size`` images (rank r of w takes chunks r, r+w, ...); a chunk's rows are
written in one flush and its images always reach the detector heads together and in order, zero-padded
to ``batch_size``: small matmuls round differently by batch size and row position, so a resumed or
distributed run gives each head exactly the batches of an uninterrupted single run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from ..api.errors import SidbenchError
from ..api.fitting import FeatureSet
from ..api.records import Record
from ..data.perturb import Perturbation
from ..data.preprocess import n_views
from ..results.score_log import ScoreBlock
from .inputs import ExtractOptions, iter_outputs, pad_rows
from .sources import LOGIT

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..api.detector import Detector
    from ..results.resume import FileIndex
    from ..results.score_log import ScoreLog
    from .loader import FileInfo
    from .sources import Source

HEAD_CHUNK = 4096  # in-memory scoring (fits, studies): images per head call


def source_outputs(det: "Detector") -> tuple[str, ...]:
    """What a detector needs from its source: named backbone features, or its own network's logit."""
    return (LOGIT,) if det.input == "pixels" else tuple(det.required_features)


def head_logits(det: "Detector", outputs: dict[str, "torch.Tensor"], views: int = 1, pad_to: int = 0,
                check: bool = True) -> "torch.Tensor":
    """Logits [b] of ``det`` from its source outputs; multi-crop outputs [b, n, ...] give n logits per image,
    averaged. Feature heads see their input zero-padded to ``pad_to`` images (fixed batch shapes).
    ``check=False`` leaves the NaN/Inf check (a device sync) to the caller, done on the host."""
    finite = finite_logits if check else (lambda _det, logits: logits)
    if det.input == "pixels":  # the source already ran the network: one logit per crop
        logit = outputs[LOGIT].float()
        return finite(det, logit.view(logit.shape[0], -1).mean(1) if views > 1 else logit)
    needed = {k: outputs[k].to(det.device, non_blocking=True) for k in det.required_features}
    b = next(iter(needed.values())).shape[0]
    if pad_to > b:
        needed = {k: pad_rows(v, pad_to) for k, v in needed.items()}
    if views > 1:
        flat = {k: v.flatten(0, 1) for k, v in needed.items()}
        return finite(det, det.score(flat).float().view(-1, views).mean(1)[:b])
    return finite(det, det.score(needed).float()[:b])


def finite_logits(det: "Detector", logits: "torch.Tensor") -> "torch.Tensor":
    """``logits``, unless any is NaN or Inf: then one line naming the detector (a NaN row would poison
    every metric of its split, and AP and AUC are undefined on it)."""
    import torch

    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        raise SidbenchError(f"detector {det.name!r} produced {bad} NaN or Inf logit(s) out of {logits.numel()}; "
                            "its weights or inputs are not finite (re-fit it, or check its checkpoint and backbone)")
    return logits


def score_features(det: "Detector", fs: FeatureSet, protocol: str | None = None, chunk: int = HEAD_CHUNK) -> "np.ndarray":
    """Logits (numpy, float64) of ``det`` on in-memory source outputs ``fs``, in record order."""
    import numpy as np
    import torch

    views = n_views(protocol or det.preprocess, det.pixel_input)
    names = source_outputs(det)
    out = []
    with torch.inference_mode():
        for i in range(0, len(fs), chunk):
            part = {k: fs.features[k][i:i + chunk] for k in names}
            out.append(head_logits(det, part, views).cpu())
    return torch.cat(out).double().numpy() if out else np.empty(0)


@dataclass
class ScoreContext:
    """What every scoring step of one run shares: the score log, skip list, extraction options, shard."""

    scores: "ScoreLog"
    options: ExtractOptions
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (reason, split)
    shard: tuple[int, int] = (0, 1)  # (rank, world)
    index: "FileIndex | None" = None  # remembers each scored file's hash and state (a resume need not read it)


def score_group(ctx: ScoreContext, group: Sequence["Detector"], source: "Source", protocol: str,
                pert: Perturbation, records_by_det: dict[str, list[Record]]) -> None:
    """Score each detector's unfinished records under ``pert`` with one source pass per image.

    An image listed in several splits (Synthbuster's shared reals) passes the source once and gets one
    row per split.
    """
    plan = _Plan(group, pert, records_by_det, ctx)
    todo_chunks = plan.pending_chunks()
    todo = [r for c in todo_chunks for r in c]
    if not todo:
        return
    names = tuple(sorted({f for d in group for f in source_outputs(d)}))
    opts = dataclasses.replace(ctx.options, desc=f"{'+'.join(d.name for d in group)} [{pert.name}]")
    starts = [0]
    for c in todo_chunks:
        starts.append(starts[-1] + len(c))
    spans = [range(a, b) for a, b in zip(starts, starts[1:])]
    arrived = _Arrived(spans)
    next_chunk = 0
    files: dict[int, "FileInfo"] = {}  # content hash of each image, as read
    for index, outs, skip in iter_outputs(source, todo, names, protocol=protocol, perturbation=pert, options=opts,
                                          files=files):
        for i, reason in skip:
            ctx.skipped.setdefault(todo[i].path, (reason, todo[i].split))
        arrived.add(index, outs, [i for i, _ in skip])
        while next_chunk < len(spans) and arrived.has(spans[next_chunk]):
            span = spans[next_chunk]
            loaded, outputs = arrived.take(span)
            plan.write_chunk(protocol, [(todo[i], files.pop(i, None)) for i in loaded], outputs)
            if len(loaded) < len(span):
                for i in span:
                    files.pop(i, None)
            next_chunk += 1


class _Arrived:
    """Source outputs as batches delivered them, kept whole (no per-image slices): a chunk of images is
    served as slices of the batches that hold it, concatenated only where it spans several."""

    def __init__(self, spans: list[range]) -> None:
        self.where: dict[int, tuple[int, int] | None] = {}  # image -> (batch id, row), None: skipped
        self.batches: dict[int, list] = {}  # batch id -> [outputs, rows not yet taken]
        self.next_id = 0
        self.spans = {s.start: s.stop for s in spans}
        self.whole: dict[int, dict] = {}  # first image -> outputs of a batch that is exactly one chunk (the usual case)

    def add(self, index: list[int], outs: dict, skipped: list[int]) -> None:
        for i in skipped:
            self.where[i] = None
        if index and self.spans.get(index[0]) == index[-1] + 1 == index[0] + len(index) \
                and index == list(range(index[0], index[-1] + 1)) \
                and all(v.shape[0] == len(index) for v in outs.values()):
            self.whole[index[0]] = outs  # no per-image bookkeeping
        elif index:
            self.batches[self.next_id] = [outs, len(index)]
            self.where.update((i, (self.next_id, j)) for j, i in enumerate(index))
            self.next_id += 1

    def has(self, span: range) -> bool:
        return span.start in self.whole or all(i in self.where for i in span)

    def take(self, span: range) -> tuple[list[int], dict]:
        """(the span's images that loaded, in order; their outputs stacked in that order)."""
        import torch

        if (outs := self.whole.pop(span.start, None)) is not None:
            return list(span), outs
        loaded, runs = [], []  # runs of consecutive rows of one batch: [batch id, first row, end row]
        for i in span:
            at = self.where.pop(i)
            if at is None:
                continue
            loaded.append(i)
            if runs and runs[-1][0] == at[0] and runs[-1][2] == at[1]:
                runs[-1][2] += 1
            else:
                runs.append([at[0], at[1], at[1] + 1])
        if not runs:
            return loaded, {}
        names = list(self.batches[runs[0][0]][0])
        parts = {k: [self.batches[b][0][k][a:e] for b, a, e in runs] for k in names}
        outputs = {k: v[0] if len(v) == 1 else torch.cat(v) for k, v in parts.items()}
        for b, a, e in runs:
            self.batches[b][1] -= e - a
            if self.batches[b][1] == 0:
                del self.batches[b]  # every row served: the batch's tensors can go
        return loaded, outputs


class _Plan:
    """Which (detector, split, image) rows a group still owes under one perturbation, chunked."""

    def __init__(self, group: Sequence["Detector"], pert: Perturbation, records_by_det: dict[str, list[Record]],
                 ctx: ScoreContext):
        self.group, self.pert, self.ctx = group, pert, ctx
        shared: dict[int, set[tuple[str, str]]] = {}  # detectors given the same list share its set
        self.wanted = {}
        for d in group:
            recs = records_by_det.get(d.name, [])
            if id(recs) not in shared:
                shared[id(recs)] = {(r.split, r.path) for r in recs}
            self.wanted[d.name] = shared[id(recs)]
        self.by_path: dict[str, list[Record]] = {}
        for recs in {id(v): v for v in records_by_det.values()}.values():
            for r in recs:
                if r not in self.by_path.setdefault(r.path, []):
                    self.by_path[r.path].append(r)
        self.single = all(len(rs) == 1 for rs in self.by_path.values())  # no image in several splits
        every = len({(r.split, r.path) for rs in self.by_path.values() for r in rs})
        done = ctx.scores.done
        # a detector that wants every image and has no row yet owes every row of every chunk: no per-row check
        self.fresh = {d.name: len(self.wanted[d.name]) == every and not done.any(d.name, pert.name) for d in group}

    def pending_chunks(self) -> list[list[Record]]:
        # The image's first split (by name) seeds its perturbation, whatever is left to do.
        images = [rs[0] if len(rs) == 1 else min(rs, key=lambda r: r.split) for rs in self.by_path.values()]
        size = self.ctx.options.batch_size
        rank, world = self.ctx.shard
        chunks = [images[k:k + size] for k in range(0, len(images), size)][rank::world]
        if any(self.fresh.values()):
            return chunks
        return [c for c in chunks if any(self._owed(d, r) for img in c for r in self.by_path[img.path] for d in self.group)]

    def _owed(self, det: "Detector", r: Record) -> bool:
        return (r.split, r.path) in self.wanted[det.name] and \
            (det.name, self.pert.name, r.split, r.path) not in self.ctx.scores.done

    def logits(self, protocol: str, outs: dict) -> "torch.Tensor":
        """[detectors, images] logits of one chunk on the CPU: every head queued on the device, then one transfer."""
        import torch

        with torch.inference_mode():
            on_device: dict[str, dict] = {}  # the chunk's outputs moved once per device, for every head there
            heads = []
            for det in self.group:
                if (feats := on_device.get(det.device)) is None:
                    feats = on_device[det.device] = {k: v.to(det.device, non_blocking=True) for k, v in outs.items()}
                heads.append(head_logits(det, feats, n_views(protocol, det.pixel_input), self.ctx.options.batch_size,
                                         check=False).float())
            heads = torch.stack([h.to(heads[0].device) for h in heads]).cpu()
        if not bool(torch.isfinite(heads).all()):
            for det, head in zip(self.group, heads):
                finite_logits(det, head)  # raises, naming the detector
        return heads

    def write_chunk(self, protocol: str, loaded: list[tuple[Record, "FileInfo | None"]], outs: dict) -> None:
        """Score one chunk's loaded images (``outs``: their source outputs, in order) with every detector and
        write their owed rows at once, each with the content hash of the bytes it was scored from. This thread
        only decides which rows are owed; the score log's writer makes them (a chunk is 64 images x detectors)."""
        if not loaded:
            return
        logits = self.logits(protocol, outs).tolist()
        if self.single:
            records, image_of = [img for img, _ in loaded], None
        else:
            records = [r for img, _ in loaded for r in self.by_path[img.path]]
            image_of = [j for j, (img, _) in enumerate(loaded) for _ in self.by_path[img.path]]
        pert, done = self.pert.name, self.ctx.scores.done
        owed: list[list[int] | None] = []
        for det in self.group:
            if self.fresh[det.name]:
                owed.append(None)
                continue
            wanted, finished = self.wanted[det.name], done.pairs(det.name, pert)
            owed.append([k for k, r in enumerate(records) if (p := (r.split, r.path)) in wanted and p not in finished])
        block = ScoreBlock([d.name for d in self.group], pert, protocol, records, image_of,
                           [info.sha256 if info is not None else "" for _, info in loaded], logits, owed)
        self.ctx.scores.write_block(block)
        if (index := self.ctx.index) is not None:  # the hash index, kept by the writer thread too
            self.ctx.scores.after(lambda: index.append((img.path, info.sha256, info.state)
                                                       for img, info in loaded if info is not None))
