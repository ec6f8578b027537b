"""``python -m spectral_backprop`` (also what ``torchrun -m spectral_backprop`` runs)."""

import sys

from spectral_backprop.cli import main

sys.exit(main())
