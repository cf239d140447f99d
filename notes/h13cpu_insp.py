import re

import numpy as np

from dropkit.kernels.cpu import _fused as fk

N = 1 << 12
x = np.random.rand(N).astype(np.float32); bias = np.zeros(4096, np.float32); r = np.full(4096, -0.0, np.float32)
out = np.empty_like(x); key = np.array([1, 2, 3, 0], np.uint64)
fk.forward_span(x, bias, r, out, 0, N, 0, key, np.uint32(6554), np.float32(1.1), 4, N)
for sig, asm in fk.forward_span.inspect_asm().items():
    calls = sorted(set(re.findall(r"call\w*\s+\*?([^\s]+)", asm)))
    print(sig[3], "ymm:", len(re.findall(r"%ymm", asm)), "zmm:", len(re.findall(r"%zmm", asm)), "xmm:", len(re.findall(r"%xmm", asm)))
    print("calls:", calls)
