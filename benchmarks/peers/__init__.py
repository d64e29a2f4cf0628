"""Reference train steps of lm's decoder (PyTorch, bare JAX), timed against lm's own."""
