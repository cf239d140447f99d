#!/bin/bash
# alternate base / fold kernel benches, N rounds
for i in 1 2 3 4; do
  for t in base fold; do
    if [ $t = base ]; then R=/tmp/h13cpu-base; else R=$1; fi
    PYTHONPATH=$R/src /work/main/.venv/bin/python /tmp/h13cpu/kbench.py /tmp/h13cpu/kb-$2-$t-$i.json > /tmp/h13cpu/kb-$2-$t-$i.log 2>&1
  done
done
echo done > /tmp/h13cpu/kb-$2-DONE
