#!/bin/bash
# usage: bench.sh SRC_ROOT TAG  (runs 3 repeats of the dropout and fused suites, 1 thread)
ROOT=$1; TAG=$2; OUT=/tmp/h13cpu/bench-$TAG; mkdir -p $OUT
cd $ROOT
for i in 1 2 3; do
  PYTHONPATH=$ROOT/src /work/main/.venv/bin/python -m dropkit.cli bench --suite dropout --threads 1 --output $OUT/dropout-$i.json > $OUT/dropout-$i.txt 2>&1
  PYTHONPATH=$ROOT/src /work/main/.venv/bin/python -m dropkit.cli bench --suite fused --threads 1 --activations gelu gelu_tanh relu silu --output $OUT/fused-$i.json > $OUT/fused-$i.txt 2>&1
  PYTHONPATH=$ROOT/src /work/main/.venv/bin/python /tmp/h13cpu/micro.py $OUT/micro-$i.json > $OUT/micro-$i.txt 2>&1
done
echo done > $OUT/DONE
