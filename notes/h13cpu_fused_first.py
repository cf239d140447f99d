"""First-call time of the fused ops in a fresh process (warm numba cache: a cache load)."""
import time

import torch

import dropkit.functional as F
from dropkit import kernels

with kernels.use_backend("reference"):
    F.dropout(torch.ones(4), 0.5, seed=1)
import dropkit.kernels.cpu  # noqa
x = torch.randn(64, 1024); b = torch.zeros(1024); r = torch.randn(64, 1024)
for act in ("gelu", "relu"):
    xl = x.clone().requires_grad_(True)
    t = time.perf_counter(); y = F.bias_act_dropout_add(xl, b, r, 0.1, act, seed=1); fwd = time.perf_counter() - t
    t = time.perf_counter(); y.sum().backward(); bwd = time.perf_counter() - t
    print(f"bias_{act}_dropout_add fp32 first fwd {fwd:.2f} s, first bwd {bwd:.2f} s")
