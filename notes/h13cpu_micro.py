"""Min-of-N timings of the CPU kernels through the public ops, one thread (h13cpu)."""
import json
import sys
import time

import torch

import dropkit.functional as F
from dropkit import kernels

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
N = 1 << 20
REPS = 40
res = {}

def tmin(fn, reps=REPS):
    fn(); fn()
    best = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); best.append(time.perf_counter() - t)
    best.sort()
    return best[0] * 1e3, best[len(best) // 2] * 1e3

with kernels.use_backend("cpu"):
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(N).to(dtype)
        out = torch.empty_like(x)
        with torch.no_grad():
            res[f"dropout {dtype} fwd"] = tmin(lambda: F.dropout(x, 0.1, seed=1, step=3))
            res[f"dropout out= {dtype}"] = tmin(lambda: F.dropout(x, 0.1, seed=1, step=3, out=out))
        x2 = torch.randn(1024, 1024).to(dtype)
        b = torch.randn(1024).to(dtype)
        r = torch.randn(1024, 1024).to(dtype)
        g = torch.randn(1024, 1024).to(dtype)
        with torch.no_grad():
            res[f"fused identity {dtype} fwd"] = tmin(
                lambda: F.bias_dropout_add(x2, b, r, 0.1, seed=1, step=2))
        for act in ("gelu", "gelu_tanh", "relu", "silu"):
            with torch.no_grad():
                res[f"fused {act} {dtype} fwd"] = tmin(
                    lambda: F.bias_act_dropout_add(x2, b, r, 0.1, act, seed=1, step=2))
            xl = x2.detach().requires_grad_(True)
            bl = b.detach().requires_grad_(True)
            def fb():
                y = F.bias_act_dropout_add(xl, bl, r, 0.1, act, seed=1, step=2)
                y.backward(g)
                xl.grad = None; bl.grad = None
            res[f"fused {act} {dtype} fwd+bwd"] = tmin(fb)
json.dump(res, open(sys.argv[1], "w"), indent=1)
for k, (mn, md) in res.items():
    print(f"{k:<40} min {mn:7.3f} ms  median {md:7.3f} ms")
