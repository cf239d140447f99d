# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of dropkit: only ``@triton.jit`` code lives here.

Launch grids, layout planning, constants and autograd are in :mod:`dropkit.kernels.triton._launch`.

Every kernel draws exactly the bits of :mod:`dropkit.rng`:

* Philox4x32-10 with key = the 64-bit seed and counter ``(block_lo, block_hi, step_lo, step_hi)``;
  the seed and step are loaded from 0-d int64 tensors, so a CUDA graph replayed with an
  incremented step buffer draws fresh masks;
* Bernoulli: element ``i`` (logical row-major index in the mask shape, plus ``offset``) takes the
  16-bit half ``i % 8`` of block ``i // 8`` and is kept iff ``half >= t``. The *tile* kernels draw
  one Philox call per 8 elements and interleave the halves in registers;
* uniforms / normals: word ``i % 4`` of block ``i // 4``, converted by Triton's own
  ``uint_to_uniform_float`` and ``pair_uniform_to_normal`` (as ``tl.randn4x``).

Arithmetic follows the reference: half-precision inputs are widened to float32, every product and
sum is a separate float32 operation (kernels are launched with ``enable_fp_fusion=False``, so
``x * a + b`` is not contracted to an FMA), and the result is rounded once. All element indices
are int64, so tensors over 2**31 elements are addressed correctly.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.random import pair_uniform_to_normal, uint_to_uniform_float

# What a Bernoulli kernel computes from the kept value (constexpr codes).
OP_SCALE: tl.constexpr = tl.constexpr(0)  # where(keep, x * c0, 0): dropout, alpha backward
OP_ALPHA: tl.constexpr = tl.constexpr(1)  # where(keep, x * c0 + c1, c2): alpha dropout
OP_KEEP: tl.constexpr = tl.constexpr(2)  # write the keep mask as uint8 (broadcast masks)
OP_GAUSS: tl.constexpr = tl.constexpr(3)  # x * (1 + c0 * n): Gaussian dropout
OP_NOISE: tl.constexpr = tl.constexpr(4)  # write the normals as float32 (broadcast masks)

# Activations of the fused ops (constexpr codes).
ACT_IDENTITY: tl.constexpr = tl.constexpr(0)
ACT_GELU: tl.constexpr = tl.constexpr(1)
ACT_GELU_TANH: tl.constexpr = tl.constexpr(2)
ACT_RELU: tl.constexpr = tl.constexpr(3)
ACT_SILU: tl.constexpr = tl.constexpr(4)

# How a fused kernel finds the broadcast operand's element for logical index i.
INDEX_FULL: tl.constexpr = tl.constexpr(0)  # same shape as x: index i
INDEX_WRAP_ONCE: tl.constexpr = tl.constexpr(1)  # period >= tile: one conditional subtract
INDEX_MODULO: tl.constexpr = tl.constexpr(2)  # short period: i % period


@triton.jit
def _step_words(step_ptr):
    step = tl.load(step_ptr)
    return (step & 0xFFFFFFFF).to(tl.uint32), ((step >> 32) & 0xFFFFFFFF).to(tl.uint32)


@triton.jit
def _threshold(rate_ptr):
    """``t = round(float32(rate) * 65536)``, ties to even as ``torch.round`` (int32 scalar).

    The product is exact (a power-of-two scale of a float32 in [0, 1]), so is the fraction."""
    scaled = tl.load(rate_ptr).to(tl.float32) * 65536.0
    whole = tl.floor(scaled)
    fraction = scaled - whole
    t = whole.to(tl.int32)
    round_up = (fraction > 0.5) | ((fraction == 0.5) & ((t & 1) == 1))
    return tl.where(round_up, t + 1, t)


@triton.jit
def _philox_blocks(seed, step_lo, step_hi, blocks):
    """The four Philox words of each (non-negative, int64) block number."""
    c0 = (blocks & 0xFFFFFFFF).to(tl.uint32)
    c1 = ((blocks >> 32) & 0xFFFFFFFF).to(tl.uint32)
    zero = tl.zeros_like(c0)
    return tl.philox(seed, c0, c1, zero + step_lo, zero + step_hi)


@triton.jit
def _tile_halves(seed, step_lo, step_hi, first_block, BLOCK: tl.constexpr):
    """16-bit halves of ``BLOCK // 8`` consecutive blocks, in element order (int32)."""
    blocks = first_block + tl.arange(0, BLOCK // 8).to(tl.int64)
    r0, r1, r2, r3 = _philox_blocks(seed, step_lo, step_hi, blocks)
    # interleave(interleave(r0, r2), interleave(r1, r3)) = r0, r1, r2, r3 per block.
    words = tl.interleave(tl.interleave(r0, r2), tl.interleave(r1, r3))
    halves = tl.interleave(words & 0xFFFF, words >> 16)
    return halves.to(tl.int32)


@triton.jit
def _tile_normals(seed, step_lo, step_hi, first_block, BLOCK: tl.constexpr):
    """Standard normals of ``BLOCK // 4`` consecutive blocks, in element order (float32)."""
    blocks = first_block + tl.arange(0, BLOCK // 4).to(tl.int64)
    r0, r1, r2, r3 = _philox_blocks(seed, step_lo, step_hi, blocks)
    n0, n1 = pair_uniform_to_normal(uint_to_uniform_float(r0), uint_to_uniform_float(r1))
    n2, n3 = pair_uniform_to_normal(uint_to_uniform_float(r2), uint_to_uniform_float(r3))
    return tl.interleave(tl.interleave(n0, n2), tl.interleave(n1, n3))


@triton.jit
def _element_half(seed, step_lo, step_hi, index):
    """The 16-bit half of each element's own mask index (one Philox call per element)."""
    r0, r1, r2, r3 = _philox_blocks(seed, step_lo, step_hi, index >> 3)
    j = (index & 7).to(tl.int32)
    word = tl.where(j < 4, tl.where(j < 2, r0, r1), tl.where(j < 6, r2, r3))
    half = tl.where((j & 1) == 0, word & 0xFFFF, word >> 16)
    return half.to(tl.int32)


@triton.jit
def _element_normal(seed, step_lo, step_hi, index):
    """The standard normal of each element's own mask index (one Philox call per element)."""
    r0, r1, r2, r3 = _philox_blocks(seed, step_lo, step_hi, index >> 2)
    j = (index & 3).to(tl.int32)
    radius_word = tl.where(j < 2, r0, r2)
    angle_word = tl.where(j < 2, r1, r3)
    cos_part, sin_part = pair_uniform_to_normal(
        uint_to_uniform_float(radius_word), uint_to_uniform_float(angle_word)
    )
    return tl.where((j & 1) == 0, cos_part, sin_part)


@triton.jit
def _rounded(y, out_ptr, EXACT_BF16: tl.constexpr):
    """``y`` (float32) rounded to the output's dtype, to nearest even. The interpreter's own
    float32 -> bfloat16 cast truncates, so under it (``EXACT_BF16``) the rounding is done on
    the bits; compiled kernels use the hardware's round-to-nearest-even conversion."""
    result = y.to(out_ptr.dtype.element_ty)
    if EXACT_BF16:  # noqa: SIM102 (both conditions are compile-time; kept apart for clarity)
        if out_ptr.dtype.element_ty == tl.bfloat16:
            bits = y.to(tl.uint32, bitcast=True)
            rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            rounded = tl.where(y != y, 0x7FC0, rounded)
            result = rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return result


@triton.jit
def _op_constants(t, c0_ptr, c1_ptr, c2_ptr, OP: tl.constexpr):
    """The op's float32 constants: Bernoulli ops index tables of all 65537 thresholds (built
    by the reference helpers), Gaussian dropout reads its standard deviation."""
    if OP == OP_GAUSS:
        c0 = tl.load(c0_ptr)
        c1 = c0
        c2 = c0
    elif OP == OP_ALPHA:
        c0 = tl.load(c0_ptr + t)
        c1 = tl.load(c1_ptr + t)
        c2 = tl.load(c2_ptr + t)
    else:
        c0 = tl.load(c0_ptr + t)
        c1 = c0
        c2 = c0
    return c0, c1, c2


@triton.jit
def _apply(x, keep_or_noise, c0, c1, c2, OP: tl.constexpr):
    """The op's value in float32 from x (float32) and the keep mask or the normals."""
    if OP == OP_SCALE:
        y = tl.where(keep_or_noise, x * c0, 0.0)
    elif OP == OP_ALPHA:
        y = tl.where(keep_or_noise, x * c0 + c1, c2)
    else:  # OP_GAUSS
        y = x * (1.0 + c0 * keep_or_noise)
    return y


# Integer arguments that never affect vectorisation are not specialised on: fewer compiled
# variants (each costs a compile on a fresh machine), same code.
@triton.jit(do_not_specialize=["first_block"])
def contiguous_kernel(
    x_ptr,
    out_ptr,
    n,
    head,
    first_block,
    seed_ptr,
    step_ptr,
    rate_ptr,
    c0_ptr,
    c1_ptr,
    c2_ptr,
    OP: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Full mask over a tensor stored in logical order (contiguous): the mask index of element
    ``L`` is ``offset + L``. Tiles are aligned to Philox blocks in mask space: tile ``pid``
    covers mask indices ``offset - head + pid * BLOCK + k`` (``head = offset % per_block``).

    Grid axis 1 is the group of a 1-D step (MC sampling): group ``g`` is the ``n`` elements
    from ``g * n``, drawn with ``step[g]`` exactly as a separate launch on it would draw them
    (a 0-d step has one group)."""
    pid = tl.program_id(0).to(tl.int64)
    group = tl.program_id(1).to(tl.int64)
    x_ptr += group * n
    out_ptr += group * n
    seed = tl.load(seed_ptr)
    step_lo, step_hi = _step_words(step_ptr + group)
    index = pid * BLOCK + tl.arange(0, BLOCK) - head
    valid = (index >= 0) & (index < n)
    t = _threshold(rate_ptr)
    if OP == OP_GAUSS or OP == OP_NOISE:  # noqa: SIM109 (no `in` on constexprs in Triton)
        draws = _tile_normals(seed, step_lo, step_hi, first_block + pid * (BLOCK // 4), BLOCK)
    else:
        halves = _tile_halves(seed, step_lo, step_hi, first_block + pid * (BLOCK // 8), BLOCK)
        draws = halves >= t
    if OP == OP_KEEP:
        tl.store(out_ptr + index, draws.to(tl.uint8), mask=valid)
    elif OP == OP_NOISE:
        tl.store(out_ptr + index, draws, mask=valid)
    else:
        x = tl.load(x_ptr + index, mask=valid).to(tl.float32)
        c0, c1, c2 = _op_constants(t, c0_ptr, c1_ptr, c2_ptr, OP)
        y = _apply(x, draws, c0, c1, c2, OP)
        tl.store(out_ptr + index, _rounded(y, out_ptr, EXACT_BF16), mask=valid)


@triton.jit
def _gather_apply_store(
    x_ptr, out_ptr, source_ptr, x_off, out_off, mask_off, valid, offset,
    seed_ptr, step_ptr, rate_ptr, c0_ptr, c1_ptr, c2_ptr,
    OP: tl.constexpr, FROM_SOURCE: tl.constexpr, EXACT_BF16: tl.constexpr,
):  # fmt: skip
    """The op at explicit x/out offsets and mask indices: the draw comes from a pre-drawn
    source (``FROM_SOURCE``: uint8 keep mask or float32 noise at the mask index) or from one
    Philox call per element."""
    t = _threshold(rate_ptr)
    if FROM_SOURCE:
        source = tl.load(source_ptr + mask_off, mask=valid)
        draws = source if OP == OP_GAUSS else source != 0
    else:
        seed = tl.load(seed_ptr)
        step_lo, step_hi = _step_words(step_ptr)
        if OP == OP_GAUSS:
            draws = _element_normal(seed, step_lo, step_hi, mask_off + offset)
        else:
            half = _element_half(seed, step_lo, step_hi, mask_off + offset)
            draws = half >= t
    x = tl.load(x_ptr + x_off, mask=valid).to(tl.float32)
    c0, c1, c2 = _op_constants(t, c0_ptr, c1_ptr, c2_ptr, OP)
    y = _apply(x, draws, c0, c1, c2, OP)
    tl.store(out_ptr + out_off, _rounded(y, out_ptr, EXACT_BF16), mask=valid)


@triton.jit
def _take_dim(rem, size, x_stride, out_stride, mask_stride, x_off, out_off, mask_off):
    coord = rem % size
    return (
        rem // size,
        x_off + coord * x_stride,
        out_off + coord * out_stride,
        mask_off + coord * mask_stride,
    )


_STRIDED_RUNTIME_INTS = ["n", "offset"] + [
    f"{name}{dim}" for name in ("size", "xs", "os", "ms") for dim in range(6)
]


@triton.jit(do_not_specialize=_STRIDED_RUNTIME_INTS)
def strided_kernel(
    x_ptr,
    out_ptr,
    source_ptr,
    n,
    offset,
    size0, size1, size2, size3, size4, size5,
    xs0, xs1, xs2, xs3, xs4, xs5,
    os0, os1, os2, os3, os4, os5,
    ms0, ms1, ms2, ms3, ms4, ms5,
    seed_ptr,
    step_ptr,
    rate_ptr,
    c0_ptr,
    c1_ptr,
    c2_ptr,
    OP: tl.constexpr,
    FROM_SOURCE: tl.constexpr,
    NDIM: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """Any strides, any broadcast mask. Walks the output in memory order (dimension 0 is the
    innermost); each element's x offset, output offset and mask index come from its
    coordinates. ``FROM_SOURCE`` reads a pre-drawn mask (uint8) or noise (float32) at the mask
    index instead of drawing per element: used when the mask is broadcast, so each draw is made
    once rather than once per element that shares it."""
    pid = tl.program_id(0).to(tl.int64)
    linear = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    valid = linear < n
    zero = tl.zeros_like(linear)
    rem, x_off, out_off, mask_off = _take_dim(linear, size0, xs0, os0, ms0, zero, zero, zero)
    if NDIM > 1:
        rem, x_off, out_off, mask_off = _take_dim(
            rem, size1, xs1, os1, ms1, x_off, out_off, mask_off
        )
    if NDIM > 2:
        rem, x_off, out_off, mask_off = _take_dim(
            rem, size2, xs2, os2, ms2, x_off, out_off, mask_off
        )
    if NDIM > 3:
        rem, x_off, out_off, mask_off = _take_dim(
            rem, size3, xs3, os3, ms3, x_off, out_off, mask_off
        )
    if NDIM > 4:
        rem, x_off, out_off, mask_off = _take_dim(
            rem, size4, xs4, os4, ms4, x_off, out_off, mask_off
        )
    if NDIM > 5:
        rem, x_off, out_off, mask_off = _take_dim(
            rem, size5, xs5, os5, ms5, x_off, out_off, mask_off
        )
    _gather_apply_store(
        x_ptr, out_ptr, source_ptr, x_off, out_off, mask_off, valid, offset,
        seed_ptr, step_ptr, rate_ptr, c0_ptr, c1_ptr, c2_ptr, OP, FROM_SOURCE, EXACT_BF16,
    )  # fmt: skip


_ROWS_RUNTIME_INTS = [
    "row_len", "chunks", "offset", "x_row_stride", "out_row_stride", "mask_row_stride",
    "mask_col_stride",
]  # fmt: skip


@triton.jit(do_not_specialize=_ROWS_RUNTIME_INTS)
def rows_kernel(
    x_ptr,
    out_ptr,
    source_ptr,
    row_len,
    chunks,
    offset,
    x_row_stride,
    out_row_stride,
    mask_row_stride,
    mask_col_stride,
    seed_ptr,
    step_ptr,
    rate_ptr,
    c0_ptr,
    c1_ptr,
    c2_ptr,
    OP: tl.constexpr,
    FROM_SOURCE: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Two merged dims whose inner one is unit-stride in x and out: rows of ``row_len``
    elements, ``chunks`` programs per row. The row comes from the program id (one scalar
    division per program), so no element pays the 64-bit division of :func:`strided_kernel`.
    Spatial dropout (a row of ``H * W`` shares one mask element: ``mask_col_stride`` 0) and
    locked dropout over dim 0 (``mask_row_stride`` 0) take this path."""
    pid = tl.program_id(0).to(tl.int64)
    row = pid // chunks
    col = (pid - row * chunks) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    valid = col < row_len
    _gather_apply_store(
        x_ptr, out_ptr, source_ptr, row * x_row_stride + col, row * out_row_stride + col,
        row * mask_row_stride + col * mask_col_stride, valid, offset,
        seed_ptr, step_ptr, rate_ptr, c0_ptr, c1_ptr, c2_ptr, OP, FROM_SOURCE, EXACT_BF16,
    )  # fmt: skip


@triton.jit(
    do_not_specialize=[
        "lines",
        "line_len",
        "line_stride",
        "line_mask_stride",
        "outer_stride",
        "outer_mask_stride",
        "first_block",
    ]
)
def transposed_kernel(
    x_ptr,
    out_ptr,
    lines,
    line_len,
    line_stride,
    line_mask_stride,
    outer_stride,
    outer_mask_stride,
    first_block,
    seed_ptr,
    step_ptr,
    rate_ptr,
    c0_ptr,
    c1_ptr,
    c2_ptr,
    OP: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK_A: tl.constexpr,
    BLOCK_B: tl.constexpr,
):  # fmt: skip
    """Full Bernoulli mask over a dense layout whose memory-innermost dimension (``b``, stride 1,
    e.g. the channels of channels_last) is not the mask's innermost (``a``, mask stride 1, e.g.
    H*W). Each tile draws ``[BLOCK_B, BLOCK_A]`` in mask order (one Philox call per 8 elements
    along ``a``), transposes it in registers and reads and writes ``[BLOCK_A, BLOCK_B]``
    coalesced along ``b``. Needs every line ``(outer, b)`` to start on a Philox block."""
    tiles_a = tl.cdiv(line_len, BLOCK_A)
    program = tl.program_id(0).to(tl.int64)
    outer = program // tiles_a
    a_start = (program % tiles_a) * BLOCK_A
    b = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
    a = a_start + tl.arange(0, BLOCK_A).to(tl.int64)
    seed = tl.load(seed_ptr)
    step_lo, step_hi = _step_words(step_ptr)
    line_start = outer * outer_mask_stride + b * line_mask_stride
    a_blocks = a_start // 8 + tl.arange(0, BLOCK_A // 8).to(tl.int64)
    blocks = first_block + (line_start // 8)[:, None] + a_blocks[None, :]
    r0, r1, r2, r3 = _philox_blocks(seed, step_lo, step_hi, blocks)
    words = tl.interleave(tl.interleave(r0, r2), tl.interleave(r1, r3))
    halves = tl.interleave(words & 0xFFFF, words >> 16).to(tl.int32)
    t = _threshold(rate_ptr)
    keep = tl.trans(halves) >= t
    valid = (a[:, None] < line_len) & (b[None, :] < lines)
    offsets = outer * outer_stride + a[:, None] * line_stride + b[None, :]
    x = tl.load(x_ptr + offsets, mask=valid).to(tl.float32)
    c0, c1, c2 = _op_constants(t, c0_ptr, c1_ptr, c2_ptr, OP)
    y = _apply(x, keep, c0, c1, c2, OP)
    tl.store(out_ptr + offsets, _rounded(y, out_ptr, EXACT_BF16), mask=valid)


@triton.jit
def _gelu_cdf(h):
    return 0.5 * (1.0 + tl.erf(h * 0.7071067811865476))


@triton.jit
def _tanh(z):
    # 1 - 2 / (exp(2z) + 1): exact limits +-1 for large |z|, no libdevice dependency.
    return 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)


@triton.jit
def _activation(h, ACT: tl.constexpr):
    if ACT == ACT_GELU:
        a = h * _gelu_cdf(h)
    elif ACT == ACT_GELU_TANH:
        inner = 0.7978845608028654 * (h + 0.044715 * h * h * h)
        a = 0.5 * h * (1.0 + _tanh(inner))
    elif ACT == ACT_RELU:
        a = tl.where(h > 0.0, h, 0.0)
    elif ACT == ACT_SILU:
        a = h * tl.sigmoid(h)
    else:
        a = h
    return a


@triton.jit
def _activation_grad(h, ACT: tl.constexpr):
    """d activation / d h."""
    if ACT == ACT_GELU:
        density = 0.3989422804014327 * tl.exp(-0.5 * h * h)
        d = _gelu_cdf(h) + h * density
    elif ACT == ACT_GELU_TANH:
        inner = 0.7978845608028654 * (h + 0.044715 * h * h * h)
        t = _tanh(inner)
        d_inner = 0.7978845608028654 * (1.0 + 0.134145 * h * h)
        d = 0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * d_inner
    elif ACT == ACT_RELU:
        d = tl.where(h > 0.0, 1.0, 0.0)
    elif ACT == ACT_SILU:
        s = tl.sigmoid(h)
        d = s * (1.0 + h * (1.0 - s))
    else:
        d = tl.full(h.shape, 1.0, tl.float32)
    return d


@triton.jit
def _broadcast_index(index, tile_start, period, MODE: tl.constexpr, BLOCK: tl.constexpr):
    """Element of a periodic operand (bias over trailing dims) for logical indices ``index``."""
    if MODE == INDEX_FULL:
        result = index
    else:
        start = ((tile_start % period) + period) % period
        local = start + tl.arange(0, BLOCK).to(tl.int64)
        if MODE == INDEX_WRAP_ONCE:
            result = tl.where(local >= period, local - period, local)
        else:
            result = local % period
    return result


@triton.jit(do_not_specialize=["first_block", "bias_period", "residual_period"])
def bias_act_dropout_add_kernel(
    x_ptr,
    bias_ptr,
    residual_ptr,
    out_ptr,
    n,
    head,
    first_block,
    bias_period,
    residual_period,
    seed_ptr,
    step_ptr,
    rate_ptr,
    scale_table_ptr,
    HAS_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    BIAS_MODE: tl.constexpr,
    RESIDUAL_MODE: tl.constexpr,
    ACT: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``residual + where(keep, act(x + bias) * scale, 0)`` over a contiguous ``x``; the mask is
    the one :func:`dropkit.functional.dropout` draws for ``x``'s shape."""
    pid = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    step_lo, step_hi = _step_words(step_ptr)
    tile_start = pid * BLOCK - head
    index = tile_start + tl.arange(0, BLOCK)
    valid = (index >= 0) & (index < n)
    halves = _tile_halves(seed, step_lo, step_hi, first_block + pid * (BLOCK // 8), BLOCK)
    t = _threshold(rate_ptr)
    keep = halves >= t
    h = tl.load(x_ptr + index, mask=valid).to(tl.float32)
    if HAS_BIAS:
        bias_index = _broadcast_index(index, tile_start, bias_period, BIAS_MODE, BLOCK)
        h = h + tl.load(bias_ptr + bias_index, mask=valid).to(tl.float32)
    y = tl.where(keep, _activation(h, ACT) * tl.load(scale_table_ptr + t), 0.0)
    if HAS_RESIDUAL:
        residual_index = _broadcast_index(index, tile_start, residual_period, RESIDUAL_MODE, BLOCK)
        y = tl.load(residual_ptr + residual_index, mask=valid).to(tl.float32) + y
    tl.store(out_ptr + index, _rounded(y, out_ptr, EXACT_BF16), mask=valid)


@triton.jit(do_not_specialize=["first_block", "bias_period"])
def bias_act_dropout_backward_kernel(
    grad_ptr,
    x_ptr,
    bias_ptr,
    grad_h_ptr,
    n,
    head,
    first_block,
    bias_period,
    seed_ptr,
    step_ptr,
    rate_ptr,
    scale_table_ptr,
    HAS_BIAS: tl.constexpr,
    BIAS_MODE: tl.constexpr,
    ACT: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``d(out)/dh``: ``where(keep, grad * scale, 0) * act'(x + bias)``; the mask is
    regenerated, the pre-activation recomputed from ``x`` and ``bias``."""
    pid = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    step_lo, step_hi = _step_words(step_ptr)
    tile_start = pid * BLOCK - head
    index = tile_start + tl.arange(0, BLOCK)
    valid = (index >= 0) & (index < n)
    halves = _tile_halves(seed, step_lo, step_hi, first_block + pid * (BLOCK // 8), BLOCK)
    t = _threshold(rate_ptr)
    keep = halves >= t
    grad = tl.load(grad_ptr + index, mask=valid).to(tl.float32)
    grad_h = tl.where(keep, grad * tl.load(scale_table_ptr + t), 0.0)
    if ACT != ACT_IDENTITY:
        h = tl.load(x_ptr + index, mask=valid).to(tl.float32)
        if HAS_BIAS:
            bias_index = _broadcast_index(index, tile_start, bias_period, BIAS_MODE, BLOCK)
            h = h + tl.load(bias_ptr + bias_index, mask=valid).to(tl.float32)
        grad_h = grad_h * _activation_grad(h, ACT)
    tl.store(grad_h_ptr + index, _rounded(grad_h, grad_h_ptr, EXACT_BF16), mask=valid)


@triton.jit(do_not_specialize=["first_block"])
def bias_act_dropout_backward_rows_kernel(
    grad_ptr,
    x_ptr,
    bias_ptr,
    grad_h_ptr,
    bias_partial_ptr,
    rows,
    cols,
    first_block,
    seed_ptr,
    step_ptr,
    rate_ptr,
    scale_table_ptr,
    ACT: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    """The backward over ``x`` viewed as ``(rows, cols)`` with a bias of ``cols`` elements,
    which also sums each tile's float32 ``grad_h`` over its rows into ``bias_partial[tile_row]``
    (the bias gradient without a second pass over ``grad_h``). Needs ``cols % 8 == 0`` and an
    ``offset`` that is a multiple of 8: every row then starts on a Philox block."""
    row_tile = tl.program_id(0).to(tl.int64)
    col_tile = tl.program_id(1).to(tl.int64)
    seed = tl.load(seed_ptr)
    step_lo, step_hi = _step_words(step_ptr)
    row = row_tile * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS).to(tl.int64)
    col = col_tile * BLOCK_COLS + tl.arange(0, BLOCK_COLS).to(tl.int64)
    col_block = col_tile * (BLOCK_COLS // 8) + tl.arange(0, BLOCK_COLS // 8).to(tl.int64)
    blocks = first_block + row[:, None] * (cols // 8) + col_block[None, :]
    r0, r1, r2, r3 = _philox_blocks(seed, step_lo, step_hi, blocks)
    words = tl.interleave(tl.interleave(r0, r2), tl.interleave(r1, r3))
    halves = tl.interleave(words & 0xFFFF, words >> 16).to(tl.int32)
    t = _threshold(rate_ptr)
    keep = halves >= t
    valid = (row[:, None] < rows) & (col[None, :] < cols)
    index = row[:, None] * cols + col[None, :]
    grad = tl.load(grad_ptr + index, mask=valid).to(tl.float32)
    grad_h = tl.where(keep, grad * tl.load(scale_table_ptr + t), 0.0)
    if ACT != ACT_IDENTITY:
        h = tl.load(x_ptr + index, mask=valid).to(tl.float32)
        h = h + tl.load(bias_ptr + col, mask=col < cols).to(tl.float32)[None, :]
        grad_h = grad_h * _activation_grad(h, ACT)
    tl.store(grad_h_ptr + index, _rounded(grad_h, grad_h_ptr, EXACT_BF16), mask=valid)
    partial = tl.sum(tl.where(valid, grad_h, 0.0), axis=0)
    tl.store(bias_partial_ptr + row_tile * cols + col, partial, mask=col < cols)


@triton.jit(do_not_specialize=["n", "row_len", "chunks", "mask_numel"])
def residual_add_kernel(
    x_ptr,
    residual_ptr,
    out_ptr,
    keep_ptr,
    n,
    row_len,
    chunks,
    mask_numel,
    rate_ptr,
    c0_ptr,
    PER_ELEMENT: tl.constexpr,
    EXACT_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``residual + where(keep, x * c0, 0)`` over contiguous ``x`` and ``residual`` viewed as
    rows of ``row_len`` elements that share one mask element: row ``r`` reads
    ``keep[r % mask_numel]`` (the uint8 mask, drawn beforehand by :func:`contiguous_kernel`).
    Long rows take ``chunks`` programs each and one scalar division per program; short rows
    (``PER_ELEMENT``) tile the flat tensor and find each element's row by division. The
    dropped value is rounded to the output's dtype before the add, as the two-op composition
    ``residual + dropout(x)`` rounds it (stochastic depth: ``mask_numel`` samples, or one for
    the whole batch)."""
    pid = tl.program_id(0).to(tl.int64)
    if PER_ELEMENT:
        index = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        valid = index < n
        keep = tl.load(keep_ptr + (index // row_len) % mask_numel, mask=valid) != 0
    else:
        row = pid // chunks
        col = (pid - row * chunks) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        valid = col < row_len
        keep = tl.load(keep_ptr + row % mask_numel) != 0
        index = row * row_len + col
    c0 = tl.load(c0_ptr + _threshold(rate_ptr))
    x = tl.load(x_ptr + index, mask=valid).to(tl.float32)
    dropped = _rounded(tl.where(keep, x * c0, 0.0), out_ptr, EXACT_BF16).to(tl.float32)
    y = tl.load(residual_ptr + index, mask=valid).to(tl.float32) + dropped
    tl.store(out_ptr + index, _rounded(y, out_ptr, EXACT_BF16), mask=valid)


__all__ = [
    "ACT_GELU",
    "ACT_GELU_TANH",
    "ACT_IDENTITY",
    "ACT_RELU",
    "ACT_SILU",
    "INDEX_FULL",
    "INDEX_MODULO",
    "INDEX_WRAP_ONCE",
    "OP_ALPHA",
    "OP_GAUSS",
    "OP_KEEP",
    "OP_NOISE",
    "OP_SCALE",
    "bias_act_dropout_add_kernel",
    "bias_act_dropout_backward_kernel",
    "bias_act_dropout_backward_rows_kernel",
    "contiguous_kernel",
    "residual_add_kernel",
    "strided_kernel",
    "transposed_kernel",
]
