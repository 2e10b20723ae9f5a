"""autotune: SLA-aware multi-objective performance auto-tuner for FMware."""

__version__ = "0.1.0"
