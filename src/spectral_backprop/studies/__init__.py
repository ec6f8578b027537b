"""Studies: the protocols that combine training and analysis, with their settings in files.

* :mod:`.demo`: the one-command demo on the embedded MNIST digits;
* :mod:`.modes`: mode coverage of a plain and an entropy-regularised GAN (ring, grid);
* :mod:`.factors`: factor purity of metric eigen-directions against SeFa, GANSpace and
  random directions on procedural sprites;
* :mod:`.protocols`: the settings of each study, read from ``configs/*.json``;
* :mod:`.workers`: independent jobs in worker processes, with progress.

This floor sits above :mod:`spectral_backprop.train` and :mod:`spectral_backprop.analysis`,
which know nothing of each other; only the command line sits above it.
"""

from .protocols import load_protocol, protocol_names

__all__ = ["load_protocol", "protocol_names"]
