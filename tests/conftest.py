"""Test-session settings, applied before anything imports jax.

The suite is dominated by XLA compile time on small models, so tests
compile at a low backend optimisation level and share a persistent
compilation cache (also across the subprocesses some tests start).
"""

import os
import tempfile

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="lm-test-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("LM_CACHE_DIR", tempfile.mkdtemp(prefix="lm-test-cache-"))
# scipy's L-BFGS-B slows 10-30x when OpenBLAS threads compete with other work on 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
