"""Direct timings of the fused numba kernels (1 thread, numpy arrays, no torch autograd):
min over REPS calls of forward_span and backward_serial per activation and dtype (h13cpu)."""
import json
import sys
import time

import numpy as np
import torch

try:
    from dropkit.kernels.cpu import _fused as fk
except ImportError:
    from dropkit.kernels.cpu import _fused_kernels as fk
REPS = 60
N = 1 << 20
ACT = {"identity": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3, "silu": 4}
key = np.array([1, 2, 3, 0], np.uint64)
res = {}
rng = np.random.default_rng(0)
for dtype in ("float32", "bfloat16"):
    xt = torch.from_numpy(rng.standard_normal(N).astype(np.float32)).to(getattr(torch, dtype))
    if dtype == "bfloat16":
        x = xt.view(torch.int16).numpy().view(np.uint16)
    else:
        x = xt.numpy()
    bias = rng.standard_normal(4096).astype(np.float32)
    resid = np.full(4096, -0.0, np.float32)
    out = np.empty_like(x); gx = np.empty_like(x)
    sums = np.full((64, 4096), -0.0, np.float32)
    for name, code in ACT.items():
        def f():
            fk.forward_span(x, bias, resid, out, 0, N, 0, key, np.uint32(6554), np.float32(1.1), code, N)
        def b():
            fk.backward_serial(x, x, bias, gx, sums, 0, key, np.uint32(6554), np.float32(1.1), code, True, N)
        for label, fn in (("fwd", f), ("bwd", b)):
            fn(); fn()
            ts = []
            for _ in range(REPS):
                t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
            res[f"{name} {dtype} {label}"] = min(ts) * 1e3
        sums[:] = -0.0
        f(); b()
        import hashlib
        res[f"{name} {dtype} bits"] = hashlib.sha256(out.tobytes() + gx.tobytes() + sums.tobytes()).hexdigest()[:16]
json.dump(res, open(sys.argv[1], "w"), indent=1)
