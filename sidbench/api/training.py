"""The one training loop of every trainable detector (:func:`train_epochs`) and the pieces a training step
uses (:class:`LossMeter`, :func:`bce_epoch`); its learning-rate schedules are in :mod:`.schedules`.

A detector's ``fit`` builds its network and optimiser, writes what one epoch does (``run_epoch(epoch)``:
shuffling, batches, optimiser steps) and hands the rest to :func:`train_epochs`: the progress bar, resuming an
interrupted fit at its last finished epoch (:class:`~sidbench.api.EpochState`), validation, the schedule,
which epoch's weights are kept, the log line and the summary of each epoch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .schedules import Plateau, Schedule
from .log import note

if TYPE_CHECKING:
    import torch

    from .fitting import FitData

KEEP = ("last", "best", "improved")


# -- pieces of a fit -----------------------------------------------------------------------------------------------
class BestWeights:
    """A copy of a network's weights at its best validation epoch (what the reference scripts save as
    ``model_epoch_best``), put back at the end of the fit with the epoch and accuracy in its summary."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.acc: float | None = None
        self._state: dict | None = None

    def keep(self, net: Any, epoch: int, acc: float) -> None:
        """Remember ``net``'s weights now (epoch counted from 1)."""
        import copy

        self.epoch, self.acc, self._state = epoch, acc, copy.deepcopy(net.state_dict())

    def offer(self, net: Any, epoch: int, acc: float) -> None:
        """Keep them if ``acc`` beats every earlier offer (strictly)."""
        if self.acc is None or acc > self.acc:
            self.keep(net, epoch, acc)

    def state(self) -> tuple | None:
        """(epoch, accuracy, weights) for an epoch checkpoint (plain data: loads with ``weights_only``)."""
        return None if self._state is None else (self.epoch, self.acc, self._state)

    @classmethod
    def from_state(cls, saved: tuple | None) -> "BestWeights":
        """What :meth:`state` saved (None: nothing kept yet)."""
        best = cls()
        if saved:
            best.epoch, best.acc, best._state = saved
        return best

    def restore(self, net: Any, summary: dict[str, Any], names: Sequence[str] = ("val_acc",)) -> dict[str, Any]:
        """Load the kept weights into ``net`` (nothing kept: unchanged) and note ``kept_epoch`` and the kept
        scores under ``names`` (4 digits; an accuracy offered as a tuple of scores gives one per name)."""
        if self._state is not None:
            net.load_state_dict(self._state)
            scores = self.acc if isinstance(self.acc, tuple) else (self.acc,)
            summary.update(kept_epoch=self.epoch, **{k: round(v, 4) for k, v in zip(names, scores)})
        return summary


class LossMeter:
    """Running sums of loss terms kept on the device (float64) and read once, at the end of an epoch: a
    training step never waits for the GPU to report its loss (``loss.item()`` per step is a host sync).
    The sums are those of ``float(loss) * n`` added on the host, bit for bit."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}

    def add(self, weight: float = 1, **terms: Any) -> None:
        """Add each term (a 0-d tensor) times ``weight`` (e.g. the batch size), multiplied in float64 as
        ``float(loss) * n`` would be on the host."""
        for key, value in terms.items():
            value = value.detach()
            value = value.float() if value.device.type == "mps" else value.double()  # MPS has no float64
            value = value * weight if weight != 1 else value
            self._sums[key] = value if key not in self._sums else self._sums[key] + value

    def totals(self) -> dict[str, float]:
        """The sums as Python floats (one host transfer)."""
        import torch

        if not self._sums:
            return {}
        keys = list(self._sums)
        values = torch.stack([self._sums[k].reshape(()) for k in keys]).cpu().tolist()
        return dict(zip(keys, values))


def bce_epoch(score: Callable[[dict[str, "torch.Tensor"]], "torch.Tensor"],
              batches: Iterable[tuple[dict[str, "torch.Tensor"], "torch.Tensor"]], optimizer: Any,
              device: str) -> tuple[float, int]:
    """One training epoch of binary cross-entropy with logits (mean over each batch) over ``batches`` of
    (inputs, labels), one optimiser step per batch; returns (mean loss per image, images seen)."""
    import torch

    meter, seen = LossMeter(), 0
    for inputs, labels in batches:
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        labels = labels.to(device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(score(inputs).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        meter.add(len(labels), loss=loss)  # no host sync per step
        seen += len(labels)
    return meter.totals().get("loss", 0.0) / max(seen, 1), seen


# -- the loop ----------------------------------------------------------------------------------------------------
def train_epochs(data: "FitData", name: str, *, epochs: int, run_epoch: Callable[[int], Any],
                 objects: dict[str, Any], validate: Callable[[], Any] | None = None,
                 schedule: Schedule | None = None, keep: str = "last", net: Any = None,
                 history: list[dict[str, Any]] | None = None, log: Callable[[str], None] = note) -> dict[str, Any]:
    """Train for up to ``epochs`` epochs (0-based ``epoch`` passed to ``run_epoch``) and return the summary.

    - ``run_epoch(epoch)`` runs one epoch's optimiser steps and returns ``(mean loss, images seen)`` or a dict
      with ``n`` (images seen), ``loss`` and any other per-image means to log; an epoch that saw nothing is
      an error (no training image could be read).
    - ``objects``: everything whose state a resumed fit needs (``state_dict``/``load_state_dict`` objects,
      torch Generators); ``objects["optimizer"]`` gives the logged rate. The schedule's state is kept too.
    - ``validate()`` (called only when ``data.has_val``): the validation accuracy, or a dict of named scores
      (``{"val_acc": ..., "val_ap": ...}``) compared in that order when ``keep="best"``.
    - ``keep``: ``"last"`` epoch's weights, the ``"best"`` on validation (strictly better than every earlier
      epoch), or the last epoch the schedule counted as ``"improved"`` (CNNDetection's
      ``model_epoch_best``); without validation the last. ``net`` is put in training mode before each
      epoch and is what ``keep`` copies.

    The summary holds ``epochs`` (run), ``n_train``, ``loss`` (last epoch) and, with kept weights,
    ``kept_epoch`` and the kept epoch's scores (4 digits). ``history`` (a list) receives one dict per epoch
    (``epoch``, the ``run_epoch`` stats, ``lr``, the validation scores), a resumed fit's earlier ones too.
    """
    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}: one of {KEEP}")
    schedule = schedule or Schedule()
    if keep == "improved" and not isinstance(schedule, Plateau):
        raise ValueError("keep='improved' follows a Plateau schedule's stopper")
    if keep != "last" and net is None:
        raise ValueError(f"keep={keep!r} needs the net whose weights it keeps")
    kept = {**objects, "schedule": schedule}
    stateful = {k: (_GeneratorState(v) if _is_generator(v) else v) for k, v in kept.items()}
    start, saved = data.epoch_state.resume(stateful, log)  # an interrupted fit goes on after its last epoch
    best, summary = BestWeights.from_state(saved.get("best")), dict(saved.get("summary", {}))
    history = history if history is not None else []
    history[:] = saved.get("history", [])
    last = 0 if saved.get("ended") else int(epochs)
    validating = validate is not None and data.has_val
    optimizer = objects.get("optimizer")
    for epoch in data.progress(range(start, last), total=max(last - start, 0), desc=f"{name} epochs"):
        schedule.begin(epoch)
        if net is not None:
            net.train()
        stats = run_epoch(epoch)
        stats = dict(stats) if isinstance(stats, dict) else {"n": stats[1], "loss": stats[0]}
        stats = {k: int(v) if k == "n" else float(v) for k, v in stats.items()}  # plain numbers: the state reloads
        data.forget_views()
        if not stats["n"]:
            from .errors import DataError

            raise DataError(f"{name}: epoch {epoch + 1} saw no training image (none of them could be read)")
        if optimizer is not None:
            stats["lr"] = optimizer.param_groups[0]["lr"]
        scores: dict[str, float] = {}
        if validating:
            got = validate()  # type: ignore[misc]
            scores = {k: float(v) for k, v in (got.items() if isinstance(got, dict) else [("val_acc", got)])}
        end = schedule.end(epoch, next(iter(scores.values())) if scores else None)
        if scores and (keep == "improved" and schedule.improved):
            best.keep(net, epoch + 1, tuple(scores.values()))
        elif scores and keep == "best":
            best.offer(net, epoch + 1, tuple(scores.values()))
        history.append({"epoch": epoch + 1, **stats, **scores})
        log(_line(history[-1], optimizer))
        summary = {"epochs": epoch + 1, "n_train": stats["n"], "loss": round(stats["loss"], 5)}
        data.epoch_state.save(epoch + 1, stateful, {"best": best.state(), "ended": end, "summary": summary,
                                                    "history": history})
        if end:
            break
    if keep != "last" and best.epoch is not None:
        best.restore(net, summary, [k for k in history[-1] if k.startswith("val_")])
        why = "the best on the validation split" if keep == "best" else "the last that improved on validation"
        log(f"kept epoch {best.epoch} of {summary['epochs']} ({why})")
    elif keep != "last" and history:
        log(f"no validation split: keeping the last epoch ({summary['epochs']})")
    return summary


def _line(entry: dict[str, Any], optimizer: Any) -> str:
    """``epoch 3: loss 0.6931, lr 0.0002 (next 0.00018), val acc 0.5000``."""
    parts = []
    for key, value in entry.items():
        if key in ("epoch", "n"):
            continue
        if key == "lr":
            now = optimizer.param_groups[0]["lr"]
            parts.append(f"lr {value:.3g}" + (f" (next {now:.3g})" if now != value else ""))
        else:
            parts.append(f"{key.replace('_', ' ')} {value:.4f}")
    return f"epoch {entry['epoch']}: " + ", ".join(parts)


def _is_generator(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.Generator)


class _GeneratorState:
    """A torch Generator as a ``state_dict`` object (its state travels with the epoch state)."""

    def __init__(self, gen: "torch.Generator"):
        self.gen = gen

    def state_dict(self) -> "torch.Tensor":
        return self.gen.get_state()

    def load_state_dict(self, state: "torch.Tensor") -> None:
        self.gen.set_state(state)
