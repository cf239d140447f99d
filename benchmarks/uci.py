"""Reproduce the UCI regression table of Gal & Ghahramani 2016 (MC dropout).

    PYTHONPATH=src python benchmarks/uci.py --data ../shared/data/uci \
        --datasets bostonHousing concrete energy wine-quality-red yacht --epochs 400

Options as ``python -m dropkit.experiments.uci --help``; the data is not shipped with dropkit.
"""

from __future__ import annotations

from dropkit.experiments.uci import main

if __name__ == "__main__":
    main()
