"""jola-ray: JoLA and LoFiT head-edit fine-tuning sweeps on Ray Tune."""

__version__ = "0.1.0"
