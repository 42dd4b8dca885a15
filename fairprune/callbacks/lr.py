"""The paper's learning-rate schedule through skorch's ``LRScheduler`` and torch's
``MultiStepLR``."""

from __future__ import annotations

import warnings

from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import MultiStepLR

from ..training.phases import current_epoch, is_pruning_epoch, lr_milestone_epochs

__all__ = ["MilestoneLR"]


class MilestoneLR(LRScheduler):
    """``MultiStepLR`` at fractions of all epochs (GMP included), ``gamma = net.lr_gamma``.

    The paper decays the primal learning rate by 0.1 at 60%, 80% and 90% of training. The
    milestones are read from the net's ``lr_milestones`` when training starts; with
    ``pruning_lr`` set, the GMP epochs run at that constant rate instead (FairGRAPE's
    schedule). At the start of every epoch the scheduler is placed at that epoch from the base
    rate, so a fit that resumes from a checkpoint or loads its GMP phase from ``memory=`` gets
    the same rates as one that ran every epoch. Records ``lr`` (the rate of the epoch) in the history.
    """

    def __init__(self) -> None:
        super().__init__(policy=MultiStepLR, monitor=None, event_name="lr", step_every="epoch")

    def on_train_begin(self, net, **kwargs):
        self.lr_scheduler_ = None

    def on_epoch_begin(self, net, **kwargs):
        epoch = current_epoch(net)
        for group in net.optimizer_.param_groups:
            group["lr"] = net.lr
            group["initial_lr"] = net.lr
        self.lr_scheduler_ = MultiStepLR(net.optimizer_, lr_milestone_epochs(net),
                                         gamma=net.lr_gamma)
        with warnings.catch_warnings():  # stepping before the optimizer's first step is meant
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epoch):
                self.lr_scheduler_.step()
        if net.pruning_lr is not None and is_pruning_epoch(net, epoch):
            for group in net.optimizer_.param_groups:  # a rate of its own in the GMP phase
                group["lr"] = float(net.pruning_lr)
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])

    def on_epoch_end(self, net, **kwargs):
        pass  # the rate of the next epoch is set when it begins

    def __getstate__(self):
        # rebuilt every epoch; pickled, it would carry a copy of the optimizer outside
        # skorch's device-aware pickling (a model pickled on a GPU would not load on a CPU)
        state = self.__dict__.copy()
        state["lr_scheduler_"] = None
        return state

