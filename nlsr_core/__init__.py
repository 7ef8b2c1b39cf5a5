"""nlsr: Neuron-Level Safety Realignment as a library (no CLI, no DVC, no params.yaml here)."""

__version__ = "0.1.0"
