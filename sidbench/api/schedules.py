"""Learning-rate schedules of :func:`~sidbench.api.train_epochs`, as the official recipes use them: a step
decay every N epochs (NPR, FreqNet, LGrad), milestones (RINE), CNNDetection's plateau drop with early
stopping (CNNDetection, UnivFD, LaDeDa, Fusing) and per-step schedules (Tip-Adapter-F's cosine, SAFE's
warm-up cosine)."""
from __future__ import annotations

from typing import Any, Callable, Sequence


class Schedule:
    """No schedule: the learning rate stays. Subclasses override :meth:`begin` (before 0-based ``epoch``),
    :meth:`end` (after it and its validation; True ends training), the per-step hooks a ``run_epoch`` calls
    (:meth:`before_step`, :meth:`after_step`), and ``state_dict``/``load_state_dict`` for a resumed fit."""

    improved = False  # whether the last epoch improved on validation (``keep="improved"`` keeps those)

    def begin(self, epoch: int) -> None:
        pass

    def end(self, epoch: int, acc: float | None) -> bool:
        return False

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        pass

    def after_step(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class StepDecay(Schedule):
    """lr x ``factor`` at the end of 0-based epochs ``every``, ``2 * every``, ... (NPR's and FreqNet's
    ``adjust_learning_rate`` after epochs 10, 20, ...)."""

    def __init__(self, optimizer: Any, every: int, factor: float):
        self.optimizer, self.every, self.factor = optimizer, int(every), float(factor)

    def end(self, epoch: int, acc: float | None) -> bool:
        if epoch % self.every == 0 and epoch != 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.factor
        return False


class Milestones(Schedule):
    """lr / 10 per milestone reached, set at the start of each 1-based epoch (RINE: ``[6, 11]`` gives lr for
    epochs 1-5, lr/10 for 6-10, lr/100 from 11)."""

    def __init__(self, optimizer: Any, lr: float, milestones: Sequence[int]):
        self.optimizer, self.lr, self.milestones = optimizer, float(lr), list(milestones)

    def lr_at(self, epoch: int) -> float:
        """The rate of 1-based ``epoch``."""
        return self.lr / 10 ** sum(1 for m in self.milestones if epoch >= m)

    def begin(self, epoch: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(epoch + 1)


class Plateau(Schedule):
    """CNNDetection's schedule (UnivFD, LaDeDa and Fusing use it too): :class:`EarlyStopping` on validation
    accuracy; after ``patience`` flat epochs the rate is divided by ``divisor`` and the count restarts with
    ``restart_delta``; training ends once the rate falls below ``min_lr``. Without validation it does nothing."""

    def __init__(self, optimizer: Any, patience: int, *, delta: float = 0.001, min_lr: float = 1e-6,
                 divisor: float = 10.0, restart_delta: float = 0.002):
        self.optimizer, self.stopper = optimizer, EarlyStopping(int(patience), delta)
        self.min_lr, self.divisor, self.restart_delta = float(min_lr), float(divisor), float(restart_delta)

    def end(self, epoch: int, acc: float | None) -> bool:
        if acc is None:
            return False
        return self.stopper.schedule(acc, self.optimizer, self.min_lr, self.divisor, self.restart_delta)

    @property
    def improved(self) -> bool:  # type: ignore[override]
        return self.stopper.improved

    def state_dict(self) -> dict[str, Any]:
        return self.stopper.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stopper.load_state_dict(state)


class PerStep(Schedule):
    """A torch scheduler stepped after every optimiser step (Tip-Adapter-F: ``CosineAnnealingLR`` over all the
    fit's iterations); ``run_epoch`` calls :meth:`after_step`."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler

    def after_step(self) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class LrAt(Schedule):
    """The rate set before every step from ``lr_at(fractional epoch)`` (SAFE: linear warm-up, then a
    half-cosine); ``run_epoch`` calls :meth:`before_step` with the step's index and the epoch's step count."""

    def __init__(self, optimizer: Any, lr_at: Callable[[float], float]):
        self.optimizer, self.lr_at = optimizer, lr_at

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(epoch + step / max(steps, 1))


class EarlyStopping:
    """CNNDetection's early-stopping rule (UnivFD's reference code reuses it): an epoch *improves* when its
    validation accuracy is at least ``best + delta`` (the first epoch always does); after ``patience`` epochs
    in a row without improvement, :meth:`step` says stop (the caller then lowers the learning rate)."""

    def __init__(self, patience: int, delta: float = 0.001):
        self.patience, self.delta = patience, delta
        self.best: float | None = None
        self.counter = 0
        self.improved = False  # whether the last step improved (CNNDetection saves its checkpoint then)

    def state_dict(self) -> dict[str, Any]:
        """What :class:`EpochState` keeps of the stopper, so a resumed fit stops when an uninterrupted one would."""
        return {"best": self.best, "counter": self.counter, "delta": self.delta, "improved": self.improved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.counter = state["best"], int(state["counter"])
        self.delta, self.improved = float(state["delta"]), bool(state["improved"])

    def step(self, acc: float) -> bool:
        """Record one epoch's validation accuracy; True when training at this learning rate should stop."""
        self.improved = self.best is None or acc >= self.best + self.delta
        if self.improved:
            self.best, self.counter = acc, 0
            return False
        self.counter += 1
        return self.counter >= self.patience

    def schedule(self, acc: float, optimizer: Any, min_lr: float, divisor: float = 10.0,
                 restart_delta: float = 0.002) -> bool:
        """One epoch of CNNDetection's schedule (UnivFD's too): :meth:`step`; when it says stop, lower the
        learning rate (:func:`lower_lr`) and start counting again from scratch with ``delta = restart_delta``,
        as the reference restarts its stopper. True when training ends (the rate fell below ``min_lr``)."""
        if not self.step(acc):
            return False
        if not lower_lr(optimizer, divisor, min_lr):
            return True
        self.best, self.counter, self.delta = None, 0, restart_delta
        return False


def lower_lr(optimizer: Any, divisor: float = 10.0, min_lr: float = 1e-6) -> bool:
    """Divide every group's learning rate by ``divisor`` (CNNDetection's ``adjust_learning_rate``); False once
    one falls below ``min_lr``, which ends training."""
    ok = True
    for group in optimizer.param_groups:
        group["lr"] /= divisor
        ok = ok and group["lr"] >= min_lr
    return ok
