"""The Lightning callback and the plain-loop helper drive a DropoutScheduler."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
from dropkit import schedules
from dropkit.integrations import scheduled


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), dropkit.nn.Dropout(0.0), nn.Linear(8, 1))


def test_plain_loop_helper_steps_after_each_batch_and_logs():
    model = _model()
    scheduler = schedules.DropoutScheduler(model, {"1": schedules.linear(0.0, 0.4, 4)})
    logged: list[tuple[int, dict[str, float]]] = []
    seen = [
        model[1].p for _ in scheduled(range(5), scheduler, log=lambda s, r: logged.append((s, r)))
    ]
    assert seen == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [step for step, _ in logged] == [0, 1, 2, 3, 4]
    assert logged[2][1] == pytest.approx({"1": 0.2})
    assert scheduler.current_step == 5


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
def test_lightning_callback_steps_logs_and_checkpoints(tmp_path):
    lightning = pytest.importorskip("lightning.pytorch", reason="needs PyTorch Lightning")
    from dropkit.integrations.lightning import DropoutSchedulerCallback

    seen: list[float] = []

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model()

        def training_step(self, batch, batch_idx):
            seen.append(self.net[1].p)
            (x,) = batch
            return self.net(x).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    module = Module()
    scheduler = schedules.DropoutScheduler(module.net, {"1": schedules.linear(0.0, 0.5, 5)})
    callback = DropoutSchedulerCallback(scheduler)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=2
    )
    trainer = lightning.Trainer(
        max_steps=4, callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, data)
    assert seen == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert float(trainer.callback_metrics["dropout/1"]) == pytest.approx(0.3)
    assert callback.state_dict() == {"step": 4}
    # A restored callback resumes the schedule mid-way.
    fresh = DropoutSchedulerCallback(
        schedules.DropoutScheduler(_model(), {"1": schedules.linear(0.0, 0.5, 5)})
    )
    fresh.load_state_dict(callback.state_dict())
    assert fresh.scheduler.rates() == pytest.approx({"1": 0.4})
