"""Scaling-law functional forms as pure numpy functions, plus the shared argument checks.

Loss is in nats per token. N is a parameter count, D a token count, C training
FLOPs, S optimiser steps; which N and which C a number uses is the caller's
convention, recorded by every fit (`N_CONVENTIONS`, `C_CONVENTIONS`).

Kaplan et al. (2020), "Scaling Laws for Neural Language Models" (KM):
    L(N) = (Nc/N)^alpha_N              L(D) = (Dc/D)^alpha_D
    L(C) = (Cc/C)^alpha_C              L(N, S) = (Nc/N)^alpha_N + (Sc/S)^alpha_S
    L(N, D) = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D
Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models":
    L(N, D) = E + A/N^alpha + B/D^beta
Minimising the Chinchilla form subject to C = 6ND gives
    N_opt(C) = G (C/6)^a,  D_opt(C) = G^-1 (C/6)^b,
    G = (alpha A / (beta B))^(1/(alpha+beta)),  a = beta/(alpha+beta),  b = alpha/(alpha+beta).
Keyword names match the `params` of the fits, so `km_loss_nd(N, D, **fit.params)` works.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

N_CONVENTIONS = ("total", "non_embedding")
C_CONVENTIONS = ("6ND", "exact")


def check_conventions(n_convention: str, c_convention: str) -> None:
    """Raise ValueError unless both conventions are known strings."""
    if n_convention not in N_CONVENTIONS:
        raise ValueError(f"n_convention must be one of {N_CONVENTIONS} (which parameters N "
                         f"counts); got {n_convention!r}")
    if c_convention not in C_CONVENTIONS:
        raise ValueError(f"c_convention must be one of {C_CONVENTIONS} (C = 6ND or an exact FLOP "
                         f"count); got {c_convention!r}")


def positive_array(name: str, value: ArrayLike) -> np.ndarray:
    """`value` as a float array; ValueError naming `name` unless every entry is finite and > 0."""
    array = np.asarray(value, dtype=float)
    bad = ~(np.isfinite(array) & (array > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and > 0 everywhere; got {array.flat[first]} "
                         f"(flat index {first})")
    return array


def same_length(**arrays: np.ndarray) -> int:
    """The common length of 1-D `arrays`; ValueError naming any that differ or are not 1-D."""
    lengths = {}
    for name, array in arrays.items():
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D; got shape {array.shape}")
        lengths[name] = array.shape[0]
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have equal lengths; got {lengths}")
    return next(iter(lengths.values()))


def _broadcast(**arrays: np.ndarray) -> None:
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = {name: a.shape for name, a in arrays.items()}
        raise ValueError(f"shapes must broadcast together; got {shapes}") from None


def km_loss_n(N: ArrayLike, *, Nc: float, alpha_N: float) -> np.ndarray:
    """KM L(N) = (Nc/N)^alpha_N: loss of models trained to convergence on ample data."""
    return (Nc / positive_array("N", N)) ** alpha_N


def km_loss_d(D: ArrayLike, *, Dc: float, alpha_D: float) -> np.ndarray:
    """KM L(D) = (Dc/D)^alpha_D: loss of large models trained on D tokens with early stopping."""
    return (Dc / positive_array("D", D)) ** alpha_D


def km_loss_c(C: ArrayLike, *, Cc: float, alpha_C: float) -> np.ndarray:
    """KM L(C) = (Cc/C)^alpha_C: loss on the compute-efficient frontier."""
    return (Cc / positive_array("C", C)) ** alpha_C


def km_loss_nd(N: ArrayLike, D: ArrayLike, *, Nc: float, Dc: float, alpha_N: float,
               alpha_D: float) -> np.ndarray:
    """KM L(N, D) = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D (N and D broadcast)."""
    N, D = positive_array("N", N), positive_array("D", D)
    _broadcast(N=N, D=D)
    return ((Nc / N) ** (alpha_N / alpha_D) + Dc / D) ** alpha_D


def km_loss_ns(N: ArrayLike, S: ArrayLike, *, Nc: float, Sc: float, alpha_N: float,
               alpha_S: float) -> np.ndarray:
    """KM L(N, S) = (Nc/N)^alpha_N + (Sc/S)^alpha_S (N and S broadcast)."""
    N, S = positive_array("N", N), positive_array("S", S)
    _broadcast(N=N, S=S)
    return (Nc / N) ** alpha_N + (Sc / S) ** alpha_S


def chinchilla_loss(N: ArrayLike, D: ArrayLike, *, E: float, A: float, B: float, alpha: float,
                    beta: float) -> np.ndarray:
    """Chinchilla L(N, D) = E + A/N^alpha + B/D^beta (N and D broadcast)."""
    N, D = positive_array("N", N), positive_array("D", D)
    _broadcast(N=N, D=D)
    return E + A / N ** alpha + B / D ** beta


def allocation_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """(a, b) = (beta, alpha) / (alpha + beta): N_opt grows as C^a and D_opt as C^b."""
    if not alpha + beta > 0:
        raise ValueError(f"alpha + beta must be > 0 for a compute-optimal allocation; got "
                         f"alpha={alpha}, beta={beta}")
    return beta / (alpha + beta), alpha / (alpha + beta)


def allocation_coefficient(*, A: float, B: float, alpha: float, beta: float) -> float:
    """G = (alpha A / (beta B))^(1/(alpha+beta)), the scale of N_opt = G (C/6)^a."""
    allocation_exponents(alpha, beta)
    if not (alpha * A > 0 and beta * B > 0):
        raise ValueError(f"alpha*A and beta*B must be > 0 for a finite allocation; got A={A}, "
                         f"B={B}, alpha={alpha}, beta={beta}")
    return float((alpha * A / (beta * B)) ** (1.0 / (alpha + beta)))


def compute_optimal(C: ArrayLike, *, A: float, B: float, alpha: float,
                    beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimising the Chinchilla loss subject to C = 6ND (E does not enter)."""
    C = positive_array("C", C)
    a, b = allocation_exponents(alpha, beta)
    G = allocation_coefficient(A=A, B=B, alpha=alpha, beta=beta)
    return G * (C / 6.0) ** a, (C / 6.0) ** b / G


def tokens_per_parameter(C: ArrayLike, *, A: float, B: float, alpha: float,
                         beta: float) -> np.ndarray:
    """D_opt / N_opt at compute C under C = 6ND."""
    N_opt, D_opt = compute_optimal(C, A=A, B=B, alpha=alpha, beta=beta)
    return D_opt / N_opt
