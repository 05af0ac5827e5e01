"""Edge SBC: session border controller control plane."""

__version__ = "0.1.0"
