#!/bin/bash
# interleaved before/after: dropout suite, fused suite, micro; 3 rounds, 1 thread
for i in 1 2 3; do
  for suite in dropout fused micro; do
    for tag in before2 after; do
      if [ $tag = before2 ]; then ROOT=/tmp/h13cpu-base; else ROOT=/work/wt-h13cpu; fi
      OUT=/tmp/h13cpu/bench-$tag; mkdir -p $OUT; cd $ROOT
      if [ $suite = micro ]; then
        PYTHONPATH=$ROOT/src /work/main/.venv/bin/python /tmp/h13cpu/micro.py $OUT/micro-$i.json > $OUT/micro-$i.txt 2>&1
      elif [ $suite = fused ]; then
        PYTHONPATH=$ROOT/src /work/main/.venv/bin/python -m dropkit.cli bench --suite fused --threads 1 --activations gelu gelu_tanh relu silu --output $OUT/fused-$i.json > $OUT/fused-$i.txt 2>&1
      else
        PYTHONPATH=$ROOT/src /work/main/.venv/bin/python -m dropkit.cli bench --suite dropout --threads 1 --output $OUT/dropout-$i.json > $OUT/dropout-$i.txt 2>&1
      fi
    done
  done
done
echo done > /tmp/h13cpu/bench2-DONE
