"""The Triton backend: layout planning, constants and launches around :mod:`._kernels`.

Constants come from the reference helpers, so the arithmetic agrees bit for bit. A Bernoulli
op's constants depend only on the integer threshold ``t = round(rate * 65536)``, so
:func:`~dropkit.kernels.reference.dropout_scale` and
:func:`~dropkit.kernels.reference.alpha_constants` are evaluated once per device for all 65537
thresholds; each kernel computes ``t`` from the rate tensor (exactly, as ``torch.round``) and
indexes those tables. Gaussian dropout's
:func:`~dropkit.kernels.reference.gaussian_std` is computed per call as a 0-d device tensor. The
rate, seed and step are read through pointers: one launch per op, no host sync, so every op can
be captured in a CUDA graph and replayed with a new step or rate.

Layouts (no hidden ``.contiguous()`` copy for the elementwise family):

* contiguous input, full mask: :func:`~._kernels.contiguous_kernel`, one Philox call per eight
  elements;
* dense layouts whose memory-innermost dimension is not the mask's (channels_last, a transposed
  ``(N, L, C)``) with lines of a multiple of 8 mask elements: :func:`~._kernels.transposed_kernel`
  draws tiles in mask order, 8 per Philox call, and transposes them in registers;
* two merged dims whose inner one is unit-stride (spatial dropout of NCHW, locked dropout over
  dim 0, row slices ``x[:, :k]``) with rows of at least :data:`ROWS_MIN_LEN`:
  :func:`~._kernels.rows_kernel`, the row taken from the program id;
* any other strides (slices, expanded gradients, odd channels_last sizes): the output
  (``empty_like``) is walked in its memory order by :func:`~._kernels.strided_kernel`, after
  merging the dimensions that stay linear in input, output and mask; a full mask is drawn per
  element, a broadcast mask (spatial, locked, feature-alpha) is drawn once into a small
  transient buffer of the mask's size and read from there.

The fused ops run on a contiguous ``x`` (another layout is copied once); ``bias`` and
``residual`` of ``x``'s trailing shape are read periodically without being expanded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import triton
from torch import Tensor

from dropkit import rng
from dropkit.kernels import _spec
from dropkit.kernels._dispatch import Epilogue, step_groups
from dropkit.kernels._layout import merged_dims
from dropkit.kernels._spec import Draw, OpSpec
from dropkit.kernels.reference import ReferenceBackend
from dropkit.kernels.triton import _kernels as K

__all__ = ["TritonBackend"]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
#: Elements per program of the tile kernels (a multiple of 8: whole Philox blocks).
TILE = 4096
#: Rows and columns per program of the backward that also reduces the bias gradient.
ROWS_TILE = 16
COLS_TILE = 256
#: CUDA's limit on the second grid dimension.
MAX_GRID_Y = 65535
#: Tile of the transposed kernel: mask-contiguous by memory-contiguous elements.
TRANSPOSED_TILE = (64, 64)
#: Elements per program of the strided kernel.
STRIDED_TILE = 1024
#: Dimensions the strided kernel walks after merging; more falls back to the reference.
MAX_DIMS = 6
#: Shortest row the rows kernel takes (shorter rows waste most lanes of a program).
ROWS_MIN_LEN = 128
#: Elements per program of the rows kernel: the short tile for rows shorter than the long one.
#: Two sizes only: each is a compiled variant per op and dtype (compiles cost device time).
ROWS_TILES = (256, 2048)
# No FMA contraction: x * a + b and 1 + std * n round like the reference's separate ops.
_LAUNCH: dict[str, Any] = {"enable_fp_fusion": False}


def _launch_options() -> dict[str, Any]:
    # The interpreter's float32 -> bfloat16 cast truncates: round on the bits there instead.
    return {**_LAUNCH, "EXACT_BF16": _interpreting()}


# The kernels' constexpr codes as plain ints (launch arguments must be plain values).
OP_SCALE, OP_ALPHA, OP_KEEP, OP_GAUSS, OP_NOISE = (
    code.value for code in (K.OP_SCALE, K.OP_ALPHA, K.OP_KEEP, K.OP_GAUSS, K.OP_NOISE)
)
INDEX_FULL, INDEX_WRAP_ONCE, INDEX_MODULO = (
    code.value for code in (K.INDEX_FULL, K.INDEX_WRAP_ONCE, K.INDEX_MODULO)
)
_ACTIVATION_CODES = {
    name: code.value
    for name, code in (
        ("identity", K.ACT_IDENTITY),
        ("gelu", K.ACT_GELU),
        ("gelu_tanh", K.ACT_GELU_TANH),
        ("relu", K.ACT_RELU),
        ("silu", K.ACT_SILU),
    )
}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def transposed_plan(
    dims: list[tuple[int, ...]], offset: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """``(inner, line, outer)`` dims for :func:`~._kernels.transposed_kernel`, or None.

    Applies to dense layouts of up to three merged dims where the memory-innermost dim is not
    the mask's innermost (channels_last, a transposed ``(N, L, C)``), input and output share
    strides, and every mask line starts on a Philox block (sizes and offset multiples of 8).
    """
    per_block = rng.BERNOULLI_PER_BLOCK
    if offset % per_block or len(dims) not in (2, 3):
        return None
    if any(x_stride != out_stride for _, x_stride, out_stride, _ in dims):
        return None
    inner, others = dims[-1], dims[:-1]
    lines = [dim for dim in others if dim[3] == 1]
    if inner[1] != 1 or len(lines) != 1:
        return None
    line = lines[0]
    outer = next((dim for dim in others if dim is not line), (1, 0, 0, 0))
    if line[0] % per_block or inner[3] % per_block or outer[3] % per_block:
        return None
    if triton.cdiv(inner[0], TRANSPOSED_TILE[1]) > MAX_GRID_Y:
        return None
    return inner, line, outer


def _is_linear(dims: list[tuple[int, ...]]) -> bool:
    return len(dims) == 0 or (len(dims) == 1 and dims[0][1:] == (1, 1, 1))


class ConstantTables:
    """Float32 constants of every threshold ``t`` in ``[0, 65536]`` on one device, per Bernoulli
    spec, computed by the spec's own ``constants``: ``(a[t],)``, or ``(a[t], b[t], dropped[t])``
    for an affine spec."""

    def __init__(self, device: torch.device) -> None:
        self.thresholds = torch.arange(rng.THRESHOLD_ONE + 1, dtype=torch.int64, device=device)
        self._by_spec: dict[str, tuple[Tensor, ...]] = {}
        self.scale = self.of(_spec.DROPOUT)[0]

    def of(self, spec: OpSpec) -> tuple[Tensor, ...]:
        if spec.name not in self._by_spec:
            a, b, dropped = spec.constants(self.thresholds, torch.float32)
            self._by_spec[spec.name] = (a, b, dropped) if spec.affine else (a,)
        return self._by_spec[spec.name]


def _launch_contiguous(
    x: Tensor,
    out: Tensor,
    n: int,
    offset: int,
    seed: Tensor,
    step: Tensor,
    rate: Tensor,
    constants: Sequence[Tensor],
    op: int,
    groups: int = 1,
) -> None:
    """``groups`` equal consecutive parts of ``n`` elements each, part ``g`` drawn with
    ``step[g]`` (``groups`` 1 for a 0-d step)."""
    per_block = rng.WORDS_PER_BLOCK if op in (OP_GAUSS, OP_NOISE) else rng.BERNOULLI_PER_BLOCK
    head = offset % per_block
    tiles = triton.cdiv(n + head, TILE)
    flat_x, flat_out = x.view(-1), out.view(-1)
    for first in range(0, groups, MAX_GRID_Y):  # CUDA's limit on grid axis 1
        count = min(MAX_GRID_Y, groups - first)
        K.contiguous_kernel[(tiles, count)](
            flat_x[first * n :], flat_out[first * n :], n, head, offset // per_block,
            seed, step[first:] if groups > 1 else step, rate, *constants,
            OP=op, BLOCK=TILE, num_warps=8, **_launch_options(),
        )  # fmt: skip


class TritonBackend:
    """dropkit's ops as Triton kernels: float16, bfloat16 and float32 CUDA tensors (and CPU
    tensors under ``TRITON_INTERPRET=1``, which is how CI tests them). Bit-identical to
    :class:`~dropkit.kernels.reference.ReferenceBackend` (Gaussian noise within a few ulps)."""

    name = "triton"
    #: Ops that take a 1-D step (MC sampling's dim-0 groups) themselves: one launch for a
    #: contiguous input, group by group otherwise.
    grouped_step_ops = frozenset(
        {
            "dropout",
            "dropout_unscaled",
            "alpha_dropout",
            "alpha_dropout_backward",
            "gaussian_dropout",
        }
    )

    def __init__(self) -> None:
        self._reference = ReferenceBackend()
        self._tables: dict[torch.device, ConstantTables] = {}

    def tables(self, device: torch.device) -> ConstantTables:
        """The constant tables of ``device``, built on first use (make that first call outside
        CUDA-graph capture, as Triton's compilation must be anyway)."""
        if device not in self._tables:
            self._tables[device] = ConstantTables(device)
        return self._tables[device]

    def supports(self, spec: OpSpec, x: Tensor) -> bool:
        if x.dtype not in SUPPORTED_DTYPES:
            return False
        return x.device.type == "cuda" or (x.device.type == "cpu" and _interpreting())

    # -- the elementwise family -------------------------------------------------------------

    def _elementwise(
        self,
        x: Tensor,
        op: int,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        rate: Tensor,
        constants: Sequence[Tensor],
        out: Tensor,
        groups: int = 1,
    ) -> bool:
        """Run ``op`` into ``out`` (may be ``x``); False (nothing written) if the layout has more
        than :data:`MAX_DIMS` unmergeable dims, or ``groups`` > 1 (a 1-D step over dim-0
        groups, ``mask_shape`` one group's) on a layout that is not one linear run."""
        n = x.numel()
        if n == 0:
            return True
        constants = [*constants, *[constants[0]] * (3 - len(constants))]
        if groups > 1:
            if list(mask_shape) != [x.shape[0] // groups, *x.shape[1:]]:
                return False
            if not _is_linear(merged_dims(x, out, x.shape)):
                return False
            _launch_contiguous(x, out, n // groups, offset, seed, step, rate, constants, op, groups)
            return True
        dims = merged_dims(x, out, mask_shape)
        if _is_linear(dims):
            _launch_contiguous(x, out, n, offset, seed, step, rate, constants, op)
            return True
        if len(dims) > MAX_DIMS:
            return False
        mask_numel = math.prod(mask_shape)
        from_source = mask_numel < n
        plan = None if from_source or op == OP_GAUSS else transposed_plan(dims, offset)
        if plan is not None:
            inner, line, outer = plan
            block_a, block_b = TRANSPOSED_TILE
            tiles = (outer[0] * triton.cdiv(line[0], block_a), triton.cdiv(inner[0], block_b))
            K.transposed_kernel[tiles](
                x, out, inner[0], line[0], line[1], inner[3], outer[1], outer[3],
                offset // rng.BERNOULLI_PER_BLOCK, seed, step, rate, *constants,
                OP=op, BLOCK_A=block_a, BLOCK_B=block_b, num_warps=8, **_launch_options(),
            )  # fmt: skip
            return True
        source = out
        if from_source:
            gaussian = op == OP_GAUSS
            source = torch.empty(
                mask_numel, dtype=torch.float32 if gaussian else torch.uint8, device=x.device
            )
            fill_op = OP_NOISE if gaussian else OP_KEEP
            _launch_contiguous(
                source, source, mask_numel, offset, seed, step, rate, constants, fill_op
            )
        if len(dims) == 2 and dims[1][1:3] == (1, 1) and dims[1][0] >= ROWS_MIN_LEN:
            (rows, x_row, out_row, mask_row), (row_len, _, _, mask_col) = dims
            block = ROWS_TILES[0] if row_len < ROWS_TILES[1] else ROWS_TILES[1]
            chunks = triton.cdiv(row_len, block)
            K.rows_kernel[(rows * chunks,)](
                x, out, source, row_len, chunks, offset, x_row, out_row, mask_row, mask_col,
                seed, step, rate, *constants,
                OP=op, FROM_SOURCE=from_source, BLOCK=block, num_warps=8 if block > 256 else 2,
                **_launch_options(),
            )  # fmt: skip
            return True
        inner_first = list(reversed(dims)) + [(1, 0, 0, 0)] * (MAX_DIMS - len(dims))
        sizes, x_strides, out_strides, mask_strides = (
            list(column) for column in zip(*inner_first, strict=True)
        )
        grid = (triton.cdiv(n, STRIDED_TILE),)
        K.strided_kernel[grid](
            x, out, source, n, offset, *sizes, *x_strides, *out_strides, *mask_strides,
            seed, step, rate, *constants,
            OP=op, FROM_SOURCE=from_source, NDIM=len(dims), BLOCK=STRIDED_TILE, num_warps=4,
            **_launch_options(),
        )  # fmt: skip
        return True

    def _run(
        self,
        x: Tensor,
        op: int,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        rate: Tensor,
        constants: Sequence[Tensor],
        fallback: Callable[[Tensor, Tensor], Tensor],
        out: Tensor | None = None,
    ) -> Tensor:
        """``op`` into ``out`` (a new tensor like ``x`` if None). A 1-D ``step`` (dim-0 groups,
        ``mask_shape`` one group's): one launch for a contiguous layout, else group by group.
        ``fallback(part, part_step)`` (the reference) where a layout has too many dims."""
        if out is None:
            out = torch.empty_like(x)
        groups = step.numel() if step.dim() == 1 else 1
        args = (seed, step, offset, mask_shape, rate, constants, out, groups)
        if groups > 1 and self._elementwise(x, op, *args):
            return out
        parts = (
            zip(step_groups(x, step), step.unbind(), step_groups(out, step), strict=True)
            if step.dim() == 1
            else [(x, step, out)]
        )
        for part, part_step, target in parts:
            if not self._elementwise(
                part, op, seed, part_step, offset, mask_shape, rate, constants, target
            ):
                target.copy_(fallback(part, part_step))
        return out

    def run(
        self,
        spec: OpSpec,
        x: Tensor,
        draw: Draw,
        out: Tensor | None = None,
        epilogue: Epilogue | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``spec`` into ``out`` (``x`` itself for in-place; None: a new tensor)."""
        if epilogue is not None:
            if spec.epilogue == "bias_act_backward":
                return self._bias_act_dropout_backward(spec, x, draw, epilogue)
            return self._bias_act_dropout_add(spec, x, draw, epilogue)
        rate, seed, step, offset, mask_shape = draw
        constants: Sequence[Tensor]
        if spec.draw == "normal":
            op, constants = OP_GAUSS, [spec.constants(rate, torch.float32)[0]]
        else:
            op = OP_ALPHA if spec.affine else OP_SCALE
            constants = self.tables(x.device).of(spec)

        def fallback(part: Tensor, part_step: Tensor) -> Tensor:
            return self._reference.elementwise(spec, part, draw._replace(step=part_step), None)

        return self._run(x, op, seed, step, offset, mask_shape, rate, constants, fallback, out)

    # -- fused ops ----------------------------------------------------------------------------

    def _fusable(self, *operands: Tensor | None) -> bool:
        return all(t is None or t.dtype in SUPPORTED_DTYPES for t in operands)

    @staticmethod
    def _periodic(operand: Tensor | None, x: Tensor) -> tuple[Tensor, int, int]:
        """``(tensor, period, index mode)`` for a bias or residual broadcast to ``x``."""
        if operand is None:
            return x, 1, INDEX_FULL
        n = x.numel()
        trailing = list(operand.shape)
        while trailing and trailing[0] == 1:
            trailing.pop(0)
        matches_tail = trailing == list(x.shape[len(x.shape) - len(trailing) :])
        if not (matches_tail and operand.is_contiguous()):
            operand, trailing = operand.expand(x.shape).contiguous(), list(x.shape)
        period = math.prod(trailing)
        if period == n:
            return operand, n, INDEX_FULL
        return operand, period, INDEX_WRAP_ONCE if period >= TILE else INDEX_MODULO

    def _bias_act_dropout_add(
        self, spec: OpSpec, x: Tensor, draw: Draw, epilogue: Epilogue
    ) -> Tensor:
        rate, seed, step, offset, _ = draw
        bias, residual, activation = epilogue.bias, epilogue.residual, epilogue.activation
        if not self._fusable(bias, residual):
            return self._reference._bias_act_dropout_add(spec, x, draw, epilogue)
        n = x.numel()
        dense = x.contiguous()
        out = torch.empty_like(dense)
        if n == 0:
            return torch.empty_like(x)
        scale_table = self.tables(x.device).scale
        bias_t, bias_period, bias_mode = self._periodic(bias, dense)
        residual_t, residual_period, residual_mode = self._periodic(residual, dense)
        head = offset % rng.BERNOULLI_PER_BLOCK
        grid = (triton.cdiv(n + head, TILE),)
        K.bias_act_dropout_add_kernel[grid](
            dense, bias_t, residual_t, out, n, head, offset // rng.BERNOULLI_PER_BLOCK,
            bias_period, residual_period, seed, step, rate, scale_table,
            HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
            BIAS_MODE=bias_mode, RESIDUAL_MODE=residual_mode,
            ACT=_ACTIVATION_CODES[activation], BLOCK=TILE, num_warps=8, **_launch_options(),
        )  # fmt: skip
        return out if dense is x else torch.empty_like(x).copy_(out)

    def _bias_act_dropout_backward(
        self, spec: OpSpec, grad: Tensor, draw: Draw, epilogue: Epilogue
    ) -> tuple[Tensor, Tensor]:
        rate, seed, step, offset, _ = draw
        x, bias, activation = epilogue.input, epilogue.bias, epilogue.activation
        if not self._fusable(x, bias) or (x is None and activation != "identity"):
            return self._reference._bias_act_dropout_backward(spec, grad, draw, epilogue)
        n = grad.numel()
        dense_grad = grad.contiguous()
        grad_h = torch.empty_like(dense_grad)
        no_bias = torch.empty(0, dtype=torch.float32, device=grad.device)
        if n == 0:
            bias_shape: tuple[int, ...] = (0,) if bias is None else tuple(bias.shape)
            return torch.empty_like(grad), torch.zeros(bias_shape, device=grad.device)
        scale_table = self.tables(grad.device).scale
        dense_x = dense_grad if x is None else x.contiguous()
        bias_t, bias_period, bias_mode = self._periodic(bias, dense_x)
        code = _ACTIVATION_CODES[activation]
        if (
            bias is not None
            and bias_mode != INDEX_FULL
            and bias_period % rng.BERNOULLI_PER_BLOCK == 0
            and offset % rng.BERNOULLI_PER_BLOCK == 0
            and triton.cdiv(bias_period, COLS_TILE) <= MAX_GRID_Y
        ):
            # x as (rows, cols) with the bias along cols: one pass gives grad_h and the bias
            # gradient's per-tile partial sums.
            rows, cols = n // bias_period, bias_period
            tiles = (triton.cdiv(rows, ROWS_TILE), triton.cdiv(cols, COLS_TILE))
            partial = torch.empty(tiles[0], cols, dtype=torch.float32, device=grad.device)
            K.bias_act_dropout_backward_rows_kernel[tiles](
                dense_grad, dense_x, bias_t, grad_h, partial, rows, cols,
                offset // rng.BERNOULLI_PER_BLOCK, seed, step, rate, scale_table,
                ACT=code, BLOCK_ROWS=ROWS_TILE, BLOCK_COLS=COLS_TILE, num_warps=8,
                **_launch_options(),
            )  # fmt: skip
            grad_bias = partial.sum(0).reshape(bias.shape)
        else:
            # With a bias, write float32 so its gradient sums unrounded values, like the
            # reference; rounding afterwards is the same round-to-nearest-even.
            target = grad_h if bias is None else torch.empty_like(grad_h, dtype=torch.float32)
            head = offset % rng.BERNOULLI_PER_BLOCK
            grid = (triton.cdiv(n + head, TILE),)
            K.bias_act_dropout_backward_kernel[grid](
                dense_grad, dense_x, bias_t, target, n, head, offset // rng.BERNOULLI_PER_BLOCK,
                bias_period, seed, step, rate, scale_table,
                HAS_BIAS=bias is not None, BIAS_MODE=bias_mode,
                ACT=code, BLOCK=TILE, num_warps=8, **_launch_options(),
            )  # fmt: skip
            grad_bias = no_bias
            if bias is not None:
                grad_bias = target.sum_to_size(bias.shape)
                grad_h.copy_(target)
        if dense_grad is not grad:
            grad_h = torch.empty_like(grad).copy_(grad_h)
        return grad_h, grad_bias
