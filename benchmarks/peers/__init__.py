"""Reference train steps of lm's decoder (PyTorch, bare JAX), timed against lm's own."""

import ml_collections


def check_supported(cfg: ml_collections.ConfigDict, peer: str) -> None:
    """Raise ValueError naming the first config field the `peer` implementation does not model."""
    m, t = cfg.model, cfg.train
    for field, value, wanted in [("model.param_dtype", m.param_dtype, "float32"),
                                 ("model.compute_dtype", m.compute_dtype, "float32"),
                                 ("model.remat", m.remat, "none"),
                                 ("train.grad_accum", t.grad_accum, 1),
                                 ("train.z_loss", t.z_loss, 0.0)]:
        if value != wanted:
            raise ValueError(f"config field '{field}' is {value!r}; the {peer} peer only "
                             f"models {wanted!r}: override it with --config.{field}={wanted}")
