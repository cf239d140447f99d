"""PyTorch Lightning: a callback that steps a :class:`~dropkit.schedules.DropoutScheduler`
and logs the rates. Importing this module imports ``lightning`` (or ``pytorch_lightning``)."""

from __future__ import annotations

from typing import Any

from dropkit.schedules._scheduler import DropoutScheduler

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # pragma: no cover - the older package name
    try:
        from pytorch_lightning import (  # type: ignore[assignment]
            Callback,
            LightningModule,
            Trainer,
        )
    except ImportError as error:
        raise ImportError(
            "dropkit.integrations.lightning needs PyTorch Lightning: pip install lightning"
        ) from error

__all__ = ["DropoutSchedulerCallback"]


class DropoutSchedulerCallback(Callback):
    """Steps ``scheduler`` after every training batch and logs each module's rate.

    The scheduler is synchronised to ``trainer.global_step`` at the start of training, and its
    state is saved in (and restored from) Lightning checkpoints, so a resumed run continues
    mid-schedule.

    Args:
        scheduler: the :class:`~dropkit.schedules.DropoutScheduler` to drive.
        log: log ``dropout/<module path>`` rates with ``pl_module.log_dict`` each step.

    Example:
        >>> callback = DropoutSchedulerCallback(scheduler)  # doctest: +SKIP
        >>> lightning.pytorch.Trainer(callbacks=[callback]).fit(model)  # doctest: +SKIP
    """

    def __init__(self, scheduler: DropoutScheduler, *, log: bool = True) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.log = log

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.scheduler.current_step != trainer.global_step:
            self.scheduler.load_state_dict({"step": int(trainer.global_step)})

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if self.log:
            rates = {f"dropout/{name}": rate for name, rate in self.scheduler.rates().items()}
            pl_module.log_dict(rates, on_step=True, on_epoch=False)
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict)
