"""The Triton backend equals the reference bit for bit (through the interpreter on CPU).

Every op runs twice with the same ``(seed, step, offset)``: once forced onto the reference and
once onto Triton; outputs and gradients must be identical (Gaussian noise: within a few ulps,
because log/sin/cos may differ in the last bit between libraries).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import dropkit
import dropkit.functional as F
from dropkit import kernels

pytest.importorskip("triton", reason="triton is not installed")

from dropkit.kernels.triton import _launch
from tests.kernels._calls import OpCalls

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(1,), (7,), (8,), (4097,), (3, 5, 7, 11)]
RATES = [0.0, 0.1, 0.5, 1.0]


def _run(backend: str, op, x: torch.Tensor, grad: torch.Tensor):
    leaf = x.detach().clone().requires_grad_(True)
    with kernels.use_backend(backend):
        y = op(leaf)
        y.backward(grad)
    return y.detach(), leaf.grad


def _assert_same(op, x: torch.Tensor, *, exact: bool = True) -> None:
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype)
    y_ref, g_ref = _run("reference", op, x, grad)
    y_tri, g_tri = _run("triton", op, x, grad)
    assert y_tri.stride() == y_ref.stride()
    if exact:
        assert torch.equal(y_tri, y_ref)
        assert torch.equal(g_tri, g_ref)
    else:  # a few ulps in float32; the last bit of a rounded half may flip
        tolerance = {"rtol": 2e-6, "atol": 2e-6} if x.dtype == torch.float32 else {}
        torch.testing.assert_close(y_tri, y_ref, **tolerance)
        torch.testing.assert_close(g_tri, g_ref, **tolerance)


def _randn(shape, dtype, *, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(device=DEVICE, dtype=dtype)


def test_backend_is_registered_for_cuda_and_chosen():
    assert "triton" in kernels.available_backends()
    assert kernels._PREFERENCE["cuda"][0] == "triton"
    x = torch.ones(4, device=DEVICE)
    with kernels.use_backend("triton"):
        assert kernels.backend_for(kernels.SPECS["dropout"], x).name == "triton"
        assert kernels.backend_for(kernels.SPECS["bias_act_dropout_add"], x).name == "triton"


@pytest.mark.parametrize("p", RATES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dropout_bit_equal(dtype, shape, p):
    x = _randn(shape, dtype)
    _assert_same(lambda t: F.dropout(t, p, seed=2**40 + 3, step=5, offset=3), x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_standard_mode_and_large_offset(dtype):
    x = _randn((3, 5, 7, 11), dtype)
    # Block numbers above 2**32 exercise the high counter word (int64 indexing).
    _assert_same(lambda t: F.dropout(t, 0.3, mode="standard", seed=9, offset=2**37 + 5), x)


FAMILY = {
    "alpha": lambda t, p: F.alpha_dropout(t, p, seed=11, step=2, offset=1),
    "spatial": lambda t, p: F.spatial_dropout(t, p, seed=11, step=2, offset=6),
    "locked": lambda t, p: F.locked_dropout(t, p, time_dim=2, seed=11),
    "feature_alpha": lambda t, p: F.feature_alpha_dropout(t, p, seed=11, step=3),
    "noise_shape": lambda t, p: F.dropout(t, p, noise_shape=(None, 1, None, None), seed=11),
    "dropout": lambda t, p: F.dropout(t, p, seed=11, step=1, offset=5),
}


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(FAMILY))
def test_family_bit_equal(name, dtype, layout):
    x = _randn((3, 5, 7, 11), dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    _assert_same(lambda t: FAMILY[name](t, 0.3), x)


@pytest.mark.parametrize("p", [0.0, 1.0, 0.5])
def test_alpha_dropout_edge_rates(p):
    _assert_same(lambda t: F.alpha_dropout(t, p, seed=4), _randn((4097,), torch.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "broadcast"])
def test_gaussian_within_ulps(dtype, layout):
    x = _randn((3, 5, 7, 11), dtype)
    noise_shape = None
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    if layout == "broadcast":
        noise_shape = (None, 1, None, None)
    op = lambda t: F.gaussian_dropout(t, 0.3, seed=7, offset=2, noise_shape=noise_shape)  # noqa: E731
    _assert_same(op, x, exact=False)


def test_gaussian_float32_noise_within_ulps_and_mostly_exact():
    x = _randn((4097,), torch.float32)
    with kernels.use_backend("reference"):
        ref = F.gaussian_dropout(x, 0.3, seed=7)
    with kernels.use_backend("triton"):
        tri = F.gaussian_dropout(x, 0.3, seed=7)
    torch.testing.assert_close(tri, ref, rtol=2e-6, atol=2e-6)
    assert (tri == ref).double().mean() > 0.75  # most draws agree to the last bit


@pytest.mark.parametrize(
    "view",
    [
        lambda b: b[::2, 1::3],
        lambda b: b.t(),
        lambda b: b[:, 4:],
        lambda b: b.unsqueeze(0).expand(3, -1, -1),
    ],
    ids=["sliced", "transposed", "offset", "expanded"],
)
def test_strided_inputs_bit_equal(view):
    x = view(_randn((10, 20), torch.bfloat16))
    _assert_same(lambda t: F.dropout(t, 0.4, seed=3, offset=1), x)
    _assert_same(lambda t: F.alpha_dropout(t, 0.4, seed=3), x)


def test_layout_planning_merges_linear_dims():
    x = torch.empty(2, 3, 4, 5)
    assert _launch.merged_dims(x, x, [2, 3, 4, 5]) == [(120, 1, 1, 1)]
    cl = x.to(memory_format=torch.channels_last)
    # Memory order N, (H, W), C: the mask index jumps by H*W along C.
    assert _launch.merged_dims(cl, cl, [2, 3, 4, 5]) == [
        (2, 60, 60, 60),
        (20, 3, 3, 1),
        (3, 1, 1, 20),
    ]
    assert _launch.merged_dims(x, x, [2, 3, 1, 1]) == [(6, 20, 20, 1), (20, 1, 1, 0)]


def test_many_unmergeable_dims_fall_back_to_reference_with_same_bits():
    x = _randn((2,) * 8, torch.float32).permute(7, 5, 3, 1, 0, 2, 4, 6)
    _assert_same(lambda t: F.dropout(t, 0.5, seed=1), x)


def test_float64_falls_back_with_one_warning():
    x = _randn((33,), torch.float64)
    with kernels.use_backend("reference"):
        expected = F.dropout(x, 0.5, seed=2)
    with kernels.use_backend("triton"):
        with pytest.warns(RuntimeWarning, match="using the reference backend"):
            y = F.dropout(x, 0.5, seed=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            F.dropout(x, 0.5, seed=2)
    assert torch.equal(y, expected)


def test_empty_tensor():
    x = torch.empty(0, 3, device=DEVICE, requires_grad=True)
    with kernels.use_backend("triton"):
        y = F.dropout(x, 0.5, seed=1)
        y.sum().backward()
    assert y.shape == (0, 3) and x.grad is not None and x.grad.shape == (0, 3)


def test_two_halves_equal_the_whole_on_triton():
    x = _randn((6, 5, 7), torch.float32)
    with kernels.use_backend("triton"):
        whole = F.dropout(x, 0.5, seed=9, step=4)
        first = F.dropout(x[:3], 0.5, seed=9, step=4)
        second = F.dropout(x[3:], 0.5, seed=9, step=4, offset=3 * 5 * 7)
    assert torch.equal(torch.cat([first, second]), whole)


FUSED_ACTIVATIONS = ["identity", "gelu", "gelu_tanh", "relu", "silu"]


def _fused(activation: str):
    def op(x, bias, residual):
        if activation == "identity":
            return F.bias_dropout_add(x, bias, residual, 0.3, seed=5, step=2, offset=3)
        if residual is None:
            return F.bias_act_dropout(x, bias, 0.3, activation, seed=5, step=2, offset=3)
        return F.bias_act_dropout_add(x, bias, residual, 0.3, activation, seed=5, step=2, offset=3)

    return op


def _fused_run(backend, op, tensors, grad):
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]
    with kernels.use_backend(backend):
        y = op(*leaves)
        y.backward(grad)
    return y.detach(), [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
def test_fused_triton_matches_reference(activation, dtype):
    x = _randn((5, 4097), dtype, seed=1)
    bias = _randn((4097,), dtype, seed=2)
    residual = None if activation == "gelu_tanh" else _randn((5, 4097), dtype, seed=3)
    grad = _randn((5, 4097), dtype, seed=4)
    op = _fused(activation)
    y_ref, grads_ref = _fused_run("reference", op, (x, bias, residual), grad)
    y_tri, grads_tri = _fused_run("triton", op, (x, bias, residual), grad)
    # Half dtypes: one rounding of differently ordered float32 math may move the last bit;
    # the bias gradient sums such values.
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 2e-3}
    )
    torch.testing.assert_close(y_tri, y_ref, **tolerance)
    # The mask of F.dropout: every dropped unit is exactly the residual (or exactly zero).
    base = torch.zeros_like(x) if residual is None else residual
    dropped = F.dropout(torch.ones_like(x), 0.3, seed=5, step=2, offset=3) == 0
    assert 0 < int(dropped.sum()) < x.numel()
    assert torch.equal(y_tri[dropped], base[dropped])
    for got, expected in zip(grads_tri, grads_ref, strict=True):
        if expected is None:
            assert got is None
        else:
            torch.testing.assert_close(got, expected, **tolerance)


@pytest.mark.parametrize(
    ("bias_shape", "residual_shape"),
    [((7,), (3, 5, 7)), ((5, 1), (5, 7)), ((1,), (1, 5, 7)), ((3, 5, 7), (7,))],
    ids=["trailing", "non-trailing", "scalar-like", "residual-broadcast"],
)
def test_fused_broadcast_operands(bias_shape, residual_shape):
    x = _randn((3, 5, 7), torch.float32)
    bias, residual = (
        _randn(bias_shape, torch.float32, seed=5),
        _randn(residual_shape, torch.float32),
    )
    grad = _randn(x.shape, torch.float32, seed=6)
    op = _fused("gelu")
    y_ref, grads_ref = _fused_run("reference", op, (x, bias, residual), grad)
    y_tri, grads_tri = _fused_run("triton", op, (x, bias, residual), grad)
    torch.testing.assert_close(y_tri, y_ref, rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads_tri, grads_ref, strict=True):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fused_identity_float32_is_bit_equal_to_the_composition_on_triton():
    x, bias = _randn((4, 33), torch.float32), _randn((33,), torch.float32, seed=1)
    residual = _randn((4, 33), torch.float32, seed=2)
    with kernels.use_backend("triton"):
        fused = F.bias_dropout_add(x, bias, residual, 0.2, seed=8, step=1)
        composed = residual + F.dropout(x + bias, 0.2, seed=8, step=1)
    assert torch.equal(fused, composed)


def test_fused_channels_last_input_keeps_layout():
    x = _randn((2, 3, 4, 5), torch.float32).to(memory_format=torch.channels_last)
    residual = _randn((2, 3, 4, 5), torch.float32, seed=1)
    op = _fused("relu")
    with kernels.use_backend("reference"):
        expected = op(x, None, residual)
    with kernels.use_backend("triton"):
        y = op(x, None, residual)
    assert torch.equal(y, expected) and y.stride() == expected.stride()


@pytest.mark.gpu
def test_cuda_graph_replay_draws_fresh_masks():
    x = torch.randn(1 << 16, device="cuda")
    layer = dropkit.nn.Dropout(0.5, seed=3).cuda()
    static_out = layer(x)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        static_out = layer(x)
    outputs = []
    for _ in range(3):
        graph.replay()
        outputs.append(static_out.clone())
    assert not torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[1], outputs[2])
    # Capture records without running: replays use steps 1, 2, 3 (advanced in place).
    assert torch.equal(outputs[1], F.dropout(x, 0.5, seed=3, step=2))


def test_in_kernel_threshold_rounds_like_torch():
    # Ties (k + 0.5) / 65536 round to even; a wrong threshold changes the kept value (scale).
    ties = [(k + 0.5) / 65536 for k in (0, 1, 2, 3, 1000, 1001, 65534)]
    gen = torch.Generator().manual_seed(0)
    rates = ties + torch.rand(8, generator=gen).tolist() + [1e-9, 1 - 1e-7]
    x = torch.ones(64, device=DEVICE)
    for rate in rates:
        with kernels.use_backend("reference"):
            expected = F.dropout(x, rate, seed=1)
        with kernels.use_backend("triton"):
            assert torch.equal(F.dropout(x, rate, seed=1), expected), rate


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
def test_fused_backward_reducing_the_bias_in_the_kernel(activation, dtype):
    # An offset that is a multiple of 8 and a bias of 8k elements take the (rows, cols)
    # backward, which sums the bias gradient per tile; 37 x 264 leaves partial tiles.
    x, bias = _randn((37, 264), dtype, seed=1), _randn((264,), dtype, seed=2)
    residual, grad = _randn((37, 264), dtype, seed=3), _randn((37, 264), dtype, seed=4)

    def op(x, bias, residual):
        if activation == "identity":
            return F.bias_dropout_add(x, bias, residual, 0.3, seed=5, offset=16)
        return F.bias_act_dropout_add(x, bias, residual, 0.3, activation, seed=5, offset=16)

    y_ref, grads_ref = _fused_run("reference", op, (x, bias, residual), grad)
    y_tri, grads_tri = _fused_run("triton", op, (x, bias, residual), grad)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(y_tri, y_ref, **tolerance)
    for got, expected in zip(grads_tri, grads_ref, strict=True):
        torch.testing.assert_close(got, expected, **tolerance)


TRANSPOSED_LAYOUTS = {
    "channels_last": lambda: _randn((2, 5, 4, 6), torch.float32).to(
        memory_format=torch.channels_last
    ),
    "channels_last_multi_tile": lambda: _randn((2, 70, 8, 12), torch.float32).to(
        memory_format=torch.channels_last
    ),
    "transposed_NLC": lambda: _randn((4, 8, 16), torch.float32).transpose(1, 2),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", list(TRANSPOSED_LAYOUTS))
def test_transposed_layouts_bit_equal(layout, dtype):
    # Lines of a multiple of 8 mask elements: one Philox call per 8 elements, drawn in mask
    # order and transposed to the memory order.
    x = TRANSPOSED_LAYOUTS[layout]().to(dtype)
    dims = _launch.merged_dims(x, torch.empty_like(x), list(x.shape))
    assert _launch.transposed_plan(dims, 8) is not None
    _assert_same(lambda t: F.dropout(t, 0.3, seed=3, step=1, offset=8), x)
    _assert_same(lambda t: F.alpha_dropout(t, 0.5, seed=3), x)


ROWS_CASES = {
    # spatial over NCHW: a row of H * W elements shares one mask element
    "spatial_nchw": ((2, 3, 16, 16), lambda t: F.spatial_dropout(t, 0.4, seed=3, step=2)),
    # locked over dim 0: every row reads the same mask row
    "locked_time_major": (
        (5, 4, 64),
        lambda t: F.locked_dropout(t, 0.4, time_dim=0, seed=3, step=2, offset=9),
    ),
    "alpha_spatial": ((2, 3, 16, 16), lambda t: F.feature_alpha_dropout(t, 0.4, seed=3)),
    "gaussian_spatial": (
        (2, 3, 16, 16),
        lambda t: F.gaussian_dropout(t, 0.4, noise_shape=(None, None, 1, 1), seed=3),
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", sorted(ROWS_CASES))
def test_rows_kernel_bit_equal_and_chosen(case, dtype, monkeypatch):
    shape, op = ROWS_CASES[case]
    launched: list[int] = []
    rows_kernel = _launch.K.rows_kernel

    class Spy:
        def __getitem__(self, grid):
            launched.append(grid[0])
            return rows_kernel[grid]

    monkeypatch.setattr(_launch.K, "rows_kernel", Spy())
    _assert_same(op, _randn(shape, dtype), exact=not case.startswith("gaussian"))
    assert launched, "the rows kernel did not run"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rows_kernel_on_a_row_slice(dtype):
    # A full mask on x[:, a:b]: rows from the program id, one Philox call per element.
    x = _randn((6, 300), dtype)[:, 17:250]
    assert _launch.merged_dims(x, torch.empty_like(x), x.shape)[1][1:3] == (1, 1)
    outputs = []
    for backend in ("reference", "triton"):
        with kernels.use_backend(backend):
            outputs.append(F.dropout(x, 0.4, seed=3, offset=5))
    assert torch.equal(outputs[0], outputs[1])


def test_short_rows_take_the_strided_kernel():
    x = _randn((4, 8, 5, 5), torch.float32)  # H * W = 25 < ROWS_MIN_LEN
    dims = _launch.merged_dims(x, torch.empty_like(x), (4, 8, 1, 1))
    assert len(dims) == 2 and dims[1][0] < _launch.ROWS_MIN_LEN
    _assert_same(lambda t: F.spatial_dropout(t, 0.4, seed=3), x)


class _LaunchCounter:
    """Wraps a Triton kernel and counts its launches (grids recorded)."""

    def __init__(self, kernel) -> None:
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


@pytest.mark.parametrize("max_grid_y", [_launch.MAX_GRID_Y, 2])
def test_grouped_step_is_one_launch_and_equals_the_reference(max_grid_y, monkeypatch):
    # A 1-D step (MC sampling): dim-0 group j drawn with step[j], bit for bit the reference's
    # separate calls; a contiguous input takes one launch (chunks of MAX_GRID_Y groups).
    counter = _LaunchCounter(_launch.K.contiguous_kernel)
    monkeypatch.setattr(_launch.K, "contiguous_kernel", counter)
    monkeypatch.setattr(_launch, "MAX_GRID_Y", max_grid_y)
    x = _randn((5 * 6, 70), torch.bfloat16)
    rate = torch.tensor(0.3, device=DEVICE)
    seed = torch.tensor(2**40 + 1, device=DEVICE)
    steps = torch.tensor([4, 9, 2**33, 0, 7], device=DEVICE)
    with kernels.use_backend("triton"):
        backend = OpCalls(kernels.backend_for(kernels.SPECS["dropout"], x))
    assert backend.name == "triton" and "dropout" in backend.grouped_step_ops
    grouped = backend.dropout(x, rate, seed, steps, 3, [6, 70], True)
    assert len(counter.grids) == -(-5 // max_grid_y)
    expected = torch.cat(
        [
            OpCalls(kernels.reference.ReferenceBackend()).dropout(
                part, rate, seed, step, 3, [6, 70], True
            )
            for part, step in zip(x.split(6), steps, strict=True)
        ]
    )
    assert torch.equal(grouped, expected)


def test_dropout_out_in_place_on_strided_and_channels_last_layouts():
    rate = torch.tensor(0.4, device=DEVICE)
    seed = torch.tensor(5, device=DEVICE)
    step = torch.tensor(3, device=DEVICE)
    with kernels.use_backend("triton"):
        backend = OpCalls(
            kernels.backend_for(kernels.SPECS["dropout"], torch.ones(1, device=DEVICE))
        )
    assert backend.name == "triton"
    reference = OpCalls(kernels.reference.ReferenceBackend())
    base = _randn((4, 16, 8, 8), torch.float32)
    for x in (base.contiguous(memory_format=torch.channels_last), base[:, ::2], base.clone()):
        expected = reference.dropout(x, rate, seed, step, 2, list(x.shape), True)
        target = x.clone()
        backend.dropout_out(target, rate, seed, step, 2, list(x.shape), True, target)
        assert torch.equal(target, expected)
        assert target.stride() == x.clone().stride()


def test_fused_backward_rows_tile_stays_small():
    # The fused backward's (rows x cols) tile is compiled as one block: a large one makes ptxas
    # run for minutes on a fresh GPU machine (seen when a constant was shadowed).
    assert _launch.ROWS_TILE * _launch.COLS_TILE <= 8192
    assert max(_launch.ROWS_TILES) <= 4096
