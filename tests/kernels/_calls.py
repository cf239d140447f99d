"""Per-op calls on a backend object, spelled as the ops' own signatures, through
``backend.run(spec, x, draw, out)``: the tests call one backend directly, bypassing dispatch."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dropkit.kernels import SPECS, Draw
from dropkit.kernels._dispatch import Backend, Epilogue


class OpCalls:
    """``OpCalls(backend).dropout(x, rate, seed, step, offset, mask_shape, scale)`` and so on."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.grouped_step_ops = backend.grouped_step_ops

    def supports(self, x: Tensor, op: str = "dropout") -> bool:
        return self.backend.supports(SPECS[op], x)

    def _run(self, op: str, x: Tensor, draw: tuple[Any, ...], out: Tensor | None = None) -> Any:
        return self.backend.run(SPECS[op], x, Draw(*draw), out)

    def dropout(self, x: Tensor, *draw: Any) -> Tensor:
        *rng, scale = draw
        return self._run("dropout" if scale else "dropout_unscaled", x, tuple(rng))

    def dropout_out(self, x: Tensor, *args: Any) -> Tensor:
        *rng, scale, out = args
        return self._run("dropout" if scale else "dropout_unscaled", x, tuple(rng), out)

    def alpha_dropout(self, x: Tensor, *draw: Any) -> Tensor:
        return self._run("alpha_dropout", x, draw)

    def alpha_dropout_backward(self, grad: Tensor, *draw: Any) -> Tensor:
        return self._run("alpha_dropout_backward", grad, draw)

    def gaussian_dropout(self, x: Tensor, *draw: Any) -> Tensor:
        return self._run("gaussian_dropout", x, draw)

    def bias_act_dropout_add(
        self, x: Tensor, bias: Any, residual: Any, rate: Any, seed: Any, step: Any, offset: int,
        activation: str,
    ) -> Tensor:  # fmt: skip
        draw = Draw(rate, seed, step, offset, x.shape)
        epilogue = Epilogue(activation, bias, residual)
        return self.backend.run(SPECS["bias_act_dropout_add"], x, draw, None, epilogue)  # type: ignore[return-value]

    def bias_act_dropout_backward(
        self, grad: Tensor, x: Any, bias: Any, rate: Any, seed: Any, step: Any, offset: int,
        activation: str,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        draw = Draw(rate, seed, step, offset, grad.shape)
        epilogue = Epilogue(activation, bias, input=x)
        spec = SPECS["bias_act_dropout_backward"]
        return self.backend.run(spec, grad, draw, None, epilogue)  # type: ignore[return-value]
