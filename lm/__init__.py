"""lm: a JAX research framework for decoder-only language models."""

__version__ = "0.1.0"
