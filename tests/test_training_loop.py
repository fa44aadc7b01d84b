"""sidbench.api.train_epochs, the one training loop: its schedules, the weights it keeps, resuming an interrupted
fit to the same model, and a fit that saw no image."""
from __future__ import annotations

import pytest
import torch

from sidbench.api import (DataError, EpochState, FitData, LrAt, Milestones, PerStep, Plateau, StepDecay,
                          train_epochs)
from sidbench.api import fitting


class Data(FitData):
    """Just what the loop reads of a FitData."""

    def __init__(self, val: bool = True, state: EpochState | None = None):
        self.val, self.epoch_state = val, state or EpochState()

    @property
    def has_val(self) -> bool:
        return self.val


class Toy:
    """A seeded linear model trained by SGD with dropout (torch's global RNG) and a shuffling generator, and a
    validation accuracy scripted per epoch."""

    def __init__(self, accs=(), lr: float = 0.1):
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(3, 1))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)
        self.order = torch.Generator().manual_seed(1)
        g = torch.Generator().manual_seed(2)
        self.x, self.y = torch.randn(10, 3, generator=g), (torch.rand(10, generator=g) > 0.5).float()
        self.accs, self.epoch, self.snapshots = list(accs), -1, {}

    def run_epoch(self, epoch: int, schedule=None):
        self.epoch, n = epoch, 0
        for step, idx in enumerate(torch.randperm(10, generator=self.order).split(4)):
            if schedule is not None:
                schedule.before_step(epoch, step, 3)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net(self.x[idx]).squeeze(1), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if schedule is not None:
                schedule.after_step()
            n += len(idx)
        self.snapshots[epoch + 1] = {k: v.clone() for k, v in self.net.state_dict().items()}
        return float(loss.detach()), n

    def validate(self):
        return self.accs[self.epoch]

    def fit(self, data, epochs, schedule=None, keep="last", history=None, logs=None, **kw):
        return train_epochs(data, "toy", epochs=epochs, run_epoch=lambda e: self.run_epoch(e, schedule),
                            objects={"net": self.net, "optimizer": self.opt, "order": self.order},
                            validate=self.validate, schedule=schedule, keep=keep, net=self.net, history=history,
                            log=(logs.append if logs is not None else lambda m: None), **kw)


def lrs(history):
    return [h["lr"] for h in history]


def test_step_decay_multiplies_after_every_nth_epoch():
    toy, history = Toy(), []
    toy.fit(Data(val=False), 6, StepDecay(toy.opt, 2, 0.5), history=history)
    assert lrs(history) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])  # after 0-based epochs 2 and 4


def test_milestones_divide_by_ten_from_each_one_based_epoch():
    toy, history = Toy(), []
    toy.fit(Data(val=False), 5, Milestones(toy.opt, 0.1, [2, 4]), history=history)
    assert lrs(history) == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_plateau_lowers_then_ends_and_keep_improved_takes_the_last_improving_epoch():
    toy, history, logs = Toy([0.5] * 10, lr=1.0), [], []
    schedule = Plateau(toy.opt, 1, min_lr=0.05)
    summary = toy.fit(Data(), 10, schedule, keep="improved", history=history, logs=logs)
    # epoch 1 improves; 2 is flat: lr / 10 and a fresh count; 3 improves (first after the restart); 4 is flat:
    # lr 0.01 < min_lr ends the fit
    assert summary["epochs"] == 4 and lrs(history) == pytest.approx([1.0, 1.0, 0.1, 0.1])
    assert summary["kept_epoch"] == 3 and summary["val_acc"] == 0.5
    assert all(torch.equal(v, toy.snapshots[3][k]) for k, v in toy.net.state_dict().items())
    assert "epoch 2: loss" in logs[1] and "lr 1 (next 0.1), val acc 0.5000" in logs[1]
    assert not Plateau(toy.opt, 1).end(0, None)  # without validation it does nothing


def test_per_step_schedules_are_driven_by_the_epoch():
    toy, history = Toy(), []
    cosine = PerStep(torch.optim.lr_scheduler.CosineAnnealingLR(toy.opt, 6))
    toy.fit(Data(val=False), 2, cosine, history=history)
    assert lrs(history)[-1] == pytest.approx(0.0, abs=1e-12) and cosine.scheduler.last_epoch == 6  # 3 steps per epoch
    toy, history = Toy(), []
    toy.fit(Data(val=False), 2, LrAt(toy.opt, lambda e: 0.1 * e), history=history)
    assert lrs(history) == pytest.approx([0.1 * 2 / 3, 0.1 * 5 / 3])  # the rate of each epoch's last step


def test_keep_best_takes_the_strictly_best_epoch_and_last_without_validation():
    toy, logs = Toy([0.5, 0.7, 0.7, 0.6]), []
    summary = toy.fit(Data(), 4, keep="best", logs=logs)
    assert summary["kept_epoch"] == 2 and summary["val_acc"] == 0.7 and summary["epochs"] == 4
    assert all(torch.equal(v, toy.snapshots[2][k]) for k, v in toy.net.state_dict().items())
    assert logs[-1] == "kept epoch 2 of 4 (the best on the validation split)"
    toy, logs = Toy(), []
    summary = toy.fit(Data(val=False), 3, keep="best", logs=logs)
    assert "kept_epoch" not in summary and logs[-1] == "no validation split: keeping the last epoch (3)"
    assert all(torch.equal(v, toy.snapshots[3][k]) for k, v in toy.net.state_dict().items())
    toy = Toy([0.5, 0.9])
    summary = toy.fit(Data(), 2, keep="last")
    assert all(torch.equal(v, toy.snapshots[2][k]) for k, v in toy.net.state_dict().items())


def test_named_scores_break_ties_in_order():
    toy = Toy([{"val_acc": 0.5, "val_ap": 0.6}, {"val_acc": 0.5, "val_ap": 0.8}, {"val_acc": 0.5, "val_ap": 0.7}])
    summary = toy.fit(Data(), 3, keep="best")
    assert (summary["kept_epoch"], summary["val_acc"], summary["val_ap"]) == (2, 0.5, 0.8)


class _Stop(BaseException):
    pass


@pytest.mark.parametrize("keep,make", [("improved", lambda o: Plateau(o, 1, min_lr=1e-4)),
                                       ("best", lambda o: StepDecay(o, 1, 0.5))])
def test_an_interrupted_fit_resumes_to_the_same_model(tmp_path, monkeypatch, keep, make):
    accs = [0.5, 0.6, 0.6, 0.55, 0.7, 0.7]
    whole, whole_history = Toy(accs), []
    expected = whole.fit(Data(state=EpochState(tmp_path / "a.pt", "k")), 6, make(whole.opt), keep, whole_history)

    save = fitting.EpochState.save

    def save_then_stop(self, epochs_done, objects, extras=None):
        save(self, epochs_done, objects, extras)
        if epochs_done == 3:
            raise _Stop

    state = EpochState(tmp_path / "b.pt", "k")
    first = Toy(accs)
    monkeypatch.setattr(fitting.EpochState, "save", save_then_stop)
    with pytest.raises(_Stop):
        first.fit(Data(state=state), 6, make(first.opt), keep)
    monkeypatch.setattr(fitting.EpochState, "save", save)
    torch.manual_seed(123)  # a resumed fit restores torch's random state too
    again, history, logs = Toy(accs), [], []
    torch.manual_seed(123)
    summary = again.fit(Data(state=EpochState(tmp_path / "b.pt", "k")), 6, make(again.opt), keep, history, logs)
    assert logs[0].startswith("resuming after epoch 3") and "epoch 4: loss" in logs[1]
    assert summary == expected and history == whole_history
    assert all(torch.equal(v, whole.net.state_dict()[k]) for k, v in again.net.state_dict().items())
    assert torch.equal(again.order.get_state(), whole.order.get_state())


def test_an_epoch_that_saw_no_image_is_an_error_and_keep_is_checked():
    with pytest.raises(DataError, match="toy: epoch 1 saw no training image"):
        train_epochs(Data(), "toy", epochs=2, run_epoch=lambda e: (0.0, 0), objects={})
    with pytest.raises(ValueError, match="keep="):
        train_epochs(Data(), "toy", epochs=2, run_epoch=lambda e: (0.0, 1), objects={}, keep="first")
    with pytest.raises(ValueError, match="Plateau"):
        train_epochs(Data(), "toy", epochs=2, run_epoch=lambda e: (0.0, 1), objects={}, keep="improved")
