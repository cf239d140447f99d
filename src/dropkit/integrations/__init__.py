"""Framework integrations. :func:`scheduled` drives a :class:`~dropkit.schedules.DropoutScheduler`
from a plain training loop; ``dropkit.integrations.lightning.DropoutSchedulerCallback`` does it
for PyTorch Lightning (import that submodule explicitly: it imports ``lightning``)."""

from dropkit.integrations._loop import scheduled

__all__ = ["scheduled"]
