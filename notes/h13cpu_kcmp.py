import glob
import json
import sys

tag = sys.argv[1]
runs = {t: [json.load(open(f)) for f in sorted(glob.glob(f"/tmp/h13cpu/kb-{tag}-{t}-*.json"))] for t in ("base", "fold")}
print("| kernel (1 thread, 2^20 elements) | before ms | after ms | after/before | same bits |")
print("|---|---|---|---|---|")
for key in runs["base"][0]:
    if key.endswith("bits"):
        continue
    b = min(r[key] for r in runs["base"]); f = min(r[key] for r in runs["fold"])
    bits_key = key.rsplit(" ", 1)[0] + " bits"
    same = all(r[bits_key] == runs["base"][0][bits_key] for r in runs["base"] + runs["fold"])
    print(f"| {key} | {b:.3f} | {f:.3f} | {f/b:.2f} | {same} |")
