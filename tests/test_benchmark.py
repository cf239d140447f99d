"""The benchmark harness measures what it says."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as torch_functional

import dropkit.functional as F
from dropkit import benchmark
from dropkit.cli import main


def test_held_bytes_dropkit_zero_per_element_torch_holds_mask():
    x = torch.randn(1 << 16)
    assert benchmark.held_bytes(lambda t: F.dropout(t, 0.1, seed=1), x) <= 64
    assert benchmark.held_bytes(lambda t: torch_functional.dropout(t, 0.1), x) >= x.numel()


def test_run_benchmarks_and_ratios():
    results = benchmark.run_benchmarks(
        ops=["dropout"], sizes=[4096], dtypes=[torch.float32], min_time_s=0.01
    )
    assert {(r.provider, r.pass_name) for r in results} == {
        (p, s) for p in ("dropkit", "torch", "copy") for s in ("fwd", "fwd+bwd")
    }
    for r in results:
        assert r.median_ms > 0 and r.q25_ms <= r.median_ms <= r.q75_ms
        floor = next(
            c for c in results if c.provider == "copy" and c.pass_name == r.pass_name
        ).median_ms
        assert abs(r.ratio_to_floor - r.median_ms / floor) < 1e-9
    table = benchmark.format_table(results)
    assert "dropout" in table and "fwd+bwd" in table


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--ops", "alpha_dropout", "--sizes", "2^10", "--dtypes", "fp32",
                 "--min-time", "0.01", "--output", str(out)])  # fmt: skip
    assert code == 0
    payload = json.loads(out.read_text())
    assert {r["provider"] for r in payload["results"]} == {"dropkit", "torch", "copy"}
    assert "alpha_dropout" in capsys.readouterr().out


def test_cli_bad_arguments_exit_2(capsys):
    assert main(["bench", "--ops", "nope", "--sizes", "16", "--min-time", "0.01"]) == 2
    assert "ops must be among" in capsys.readouterr().err


def test_dropout_suite_providers_ratios_and_held_bytes():
    results = benchmark.run_dropout_benchmarks(
        sizes=[4096], dtypes=[torch.float32], threads=[1], rates=[0.5], min_time_s=0.0,
        min_repeats=3,
    )  # fmt: skip
    cells = {(r.provider, r.pass_name): r for r in results}
    assert set(cells) == {
        *(
            (p, s)
            for p in ("dropkit", "torch", "torch.compile", "x*2.0")
            for s in ("fwd", "fwd+bwd")
        ),
        ("dropkit out=", "fwd"),
        ("copy", "fwd"),
    }
    for (provider, pass_name), r in cells.items():
        assert r.threads == 1 and r.p == 0.5 and r.repeats >= 3
        assert r.q25_ms <= r.median_ms <= r.q75_ms
        floor = cells[(benchmark.DROPOUT_FLOORS[provider], pass_name)]
        assert abs(r.ratio_to_floor - r.median_ms / floor.median_ms) < 1e-9
    assert cells[("dropkit", "fwd")].held_bytes_per_element * 4096 <= 64  # three 0-d tensors
    assert cells[("torch", "fwd")].held_bytes_per_element >= 1
    table = benchmark.format_dropout_table(results)
    assert "torch.compile" in table and "dropkit out=" in table and "fwd+bwd" in table


def test_cli_dropout_suite_threads_and_rates(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "--suite", "dropout", "--sizes", "2^10", "--dtypes", "bf16",
                 "--threads", "1", "2", "--rates", "0.1", "--min-time", "0.001",
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    payload = json.loads(out.read_text())
    assert {(r["threads"], r["dtype"]) for r in payload["results"]} == {
        (1, "bfloat16"),
        (2, "bfloat16"),
    }


def test_fused_suite_providers_ratios_and_held_bytes(tmp_path):
    results = benchmark.run_fused_benchmarks(
        sizes=[2048], dtypes=[torch.float32], threads=[1], rates=[0.5], activations=["silu"],
        features=256, min_time_s=0.0, min_repeats=3,
    )  # fmt: skip
    cells = {(r.provider, r.pass_name): r for r in results}
    assert set(cells) == {(p, s) for p in benchmark.FUSED_PROVIDERS for s in ("fwd", "fwd+bwd")}
    for (_, pass_name), r in cells.items():
        assert r.op == "bias_silu_dropout_add" and r.numel == 2048 and r.p == 0.5
        floor = cells[("floor", pass_name)]
        assert abs(r.ratio_to_floor - r.median_ms / floor.median_ms) < 1e-9
    # dropkit holds the bias and three 0-d tensors; eager PyTorch a mask and silu's input.
    assert cells[("dropkit", "fwd")].held_bytes_per_element * 2048 <= 256 * 4 + 64
    assert cells[("torch", "fwd")].held_bytes_per_element >= 5
    assert "bias_silu_dropout_add" in benchmark.format_fused_table(results)
    out = tmp_path / "bench.json"
    code = main(["bench", "--suite", "fused", "--sizes", "2^12", "--dtypes", "bf16",
                 "--activations", "relu", "--min-time", "0.001", "--output", str(out)])  # fmt: skip
    assert code == 0
    assert {r["op"] for r in json.loads(out.read_text())["results"]} == {"bias_relu_dropout_add"}


def test_learned_suite_layers_ratios_and_held_bytes(tmp_path):
    results = benchmark.run_learned_benchmarks(
        sizes=[512], features=32, conv_channels=8, dtypes=[torch.float32], threads=[1],
        min_time_s=0.0, min_repeats=3,
    )  # fmt: skip
    cells = {(r.op, r.provider, r.pass_name): r for r in results}
    assert set(cells) == {
        (layer, provider, pass_name)
        for layer in benchmark.LEARNED_LAYERS
        for provider in benchmark.LEARNED_PROVIDERS
        for pass_name in ("fwd", "fwd+bwd")
    }
    for (layer, _, pass_name), r in cells.items():
        assert r.median_ms > 0 and r.q25_ms <= r.median_ms <= r.q75_ms and r.repeats >= 3
        floor = cells[(layer, "layer", pass_name)].median_ms
        torch_ms = cells[(layer, "torch", pass_name)].median_ms
        assert abs(r.ratio_to_floor - r.median_ms / floor) < 1e-9
        assert abs(r.ratio_to_torch - r.median_ms / torch_ms) < 1e-9
        assert int(r.extra["held_bytes"]) == round(r.held_bytes_per_element * r.numel)
    # Both Linear layers save their (dropped) input: 4 bytes per element in float32. Concrete
    # dropout regenerates its relaxed mask in backward; the plain torch layer also keeps the
    # uniforms' logs and the mask (at least one more input-sized float32 tensor).
    dropkit_held = cells[("concrete", "dropkit", "fwd")].held_bytes_per_element
    assert dropkit_held <= 4 + 64 / 512  # plus 0-d seed/step/p tensors
    assert cells[("concrete", "torch", "fwd")].held_bytes_per_element >= dropkit_held + 4
    table = benchmark.format_learned_table(results)
    assert "dk/torch" in table and "dk/layer" in table and "svd_conv" in table
    out = tmp_path / "bench.json"
    code = main(["bench", "--suite", "learned", "--layers", "concrete", "svd", "--sizes", "2^9",
                 "--features", "16", "--dtypes", "fp32", "--min-time", "0.001",
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    payload = json.loads(out.read_text())
    assert {r["op"] for r in payload["results"]} == {"concrete", "svd"}


def test_learned_suite_unknown_layer_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="layers must be among"):
        benchmark.run_learned_benchmarks(layers=["nope"], sizes=[64], min_time_s=0.0)
