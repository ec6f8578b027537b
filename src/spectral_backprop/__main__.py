"""``python -m spectral_backprop`` (also what ``torchrun -m spectral_backprop`` runs)."""

import sys

from spectral_backprop.cli import main

if __name__ == "__main__":  # importing this module (doctest collection) runs nothing
    sys.exit(main())
