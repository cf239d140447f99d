"""Median over repeats of each cell's median (dropkit provider), before vs after."""
import glob
import json
import statistics
import sys


def cells(tag, suite):
    out = {}
    for f in sorted(glob.glob(f"/tmp/h13cpu/bench-{tag}/{suite}-*.json")):
        data = json.load(open(f))
        rows = data["results"] if isinstance(data, dict) and "results" in data else data
        for r in rows:
            if r["provider"] not in ("dropkit", "dropkit out="):
                continue
            key = (r["op"], r["provider"], r["dtype"], r["numel"], r["pass_name"])
            out.setdefault(key, []).append(r["median_ms"])
    return out
def micro(tag):
    out = {}
    for f in sorted(glob.glob(f"/tmp/h13cpu/bench-{tag}/micro-*.json")):
        for k, (mn, md) in json.load(open(f)).items():
            out.setdefault(k, []).append(mn)
    return out
tags = sys.argv[1:]
for suite in ("dropout", "fused"):
    print(f"\n## {suite} suite (`dropkit bench --suite {suite} --threads 1`), dropkit median ms, median of 3 runs")
    print("| cell | " + " | ".join(tags) + " | ratio |")
    print("|---|" + "---|" * (len(tags) + 1))
    data = [cells(t, suite) for t in tags]
    for key in data[0]:
        vals = [statistics.median(d.get(key, [float('nan')])) for d in data]
        ratio = vals[-1] / vals[0] if len(vals) > 1 else 1
        print(f"| {' '.join(map(str, key))} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {ratio:.2f} |")
print("\n## micro (min over 40 calls; median of 3 runs' min), ms, 1 thread")
print("| cell | " + " | ".join(tags) + " | ratio |")
print("|---|" + "---|" * (len(tags) + 1))
data = [micro(t) for t in tags]
for key in data[0]:
    vals = [statistics.median(d.get(key, [float('nan')])) for d in data]
    ratio = vals[-1] / vals[0] if len(vals) > 1 else 1
    print(f"| {key} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {ratio:.2f} |")
