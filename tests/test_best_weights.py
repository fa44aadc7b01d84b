"""BestWeights: the best validation epoch's weights, restored at the end of a fit (the helper the CNN recipes
share instead of each keeping a deep copy by hand)."""
import torch

from sidbench.api import BestWeights


def test_keeps_the_strictly_best_offer_and_restores_it():
    net = torch.nn.Linear(2, 1)
    best = BestWeights()
    summary = best.restore(net, {})
    assert summary == {}  # nothing kept: the network is left as it is
    for epoch, acc in enumerate([0.5, 0.7, 0.7, 0.6], start=1):
        with torch.no_grad():
            net.weight.fill_(epoch)
        best.offer(net, epoch, acc)
    with torch.no_grad():
        net.weight.fill_(99)
    assert best.restore(net, {"loss": 1.0}) == {"loss": 1.0, "kept_epoch": 2, "val_acc": 0.7}
    assert torch.equal(net.weight, torch.full((1, 2), 2.0))  # epoch 2's weights, a copy (not epoch 4's)


def test_keep_takes_what_the_caller_judged_best():
    net = torch.nn.Linear(1, 1)
    best = BestWeights()
    best.keep(net, 3, 0.4)
    best.keep(net, 5, 0.2)  # an early-stopping rule may call an equal or lower accuracy an improvement
    assert best.restore(net, {})["kept_epoch"] == 5
