"""matplotlib on the non-interactive Agg backend, imported only when a figure is drawn.

Kept free of torch so that the report can render figures from saved arrays alone, and
imported lazily so that ``import spectral_backprop`` stays light.
"""


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend; a clear error when matplotlib is absent."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'spectral-backprop[data]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
