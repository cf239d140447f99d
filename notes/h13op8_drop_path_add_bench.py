import timeit

import torch

import dropkit.functional as F

torch.set_num_threads(1)
for shape in [(8, 128), (64, 197, 384)]:
    x = torch.randn(shape, requires_grad=True); b = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    fused = lambda: F.drop_path_add(x, b, 0.1, seed=1)
    comp = lambda: x + F.drop_path(b, 0.1, seed=1)
    for name, fn in (("fused", fused), ("composition", comp)):
        def nograd(fn=fn):
            with torch.no_grad(): fn()
        def fb(fn=fn):
            torch.autograd.grad(fn(), [x, b], g)
        for label, f in (("fwd", nograd), ("fwd+bwd", fb)):
            f()
            n = 200 if shape[0] == 8 else 10
            t = min(timeit.repeat(f, number=n, repeat=5)) / n * 1e3
            print(f"{shape} {name:12s} {label:8s} {t:.3f} ms")
