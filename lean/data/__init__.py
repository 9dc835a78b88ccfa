"""Datasets of every layout, audio decoding and caching, windowing, tf.data pipelines."""


def load_dataset(root, layout=None, fold=None, val_fold=None):
    """Reads and validates a dataset (interim: FSD50K layout only, until the layouts land)."""
    from lean.data.fsd50k import load_dataset as load_fsd50k
    from lean.errors import LeanError

    if layout not in (None, "fsd50k") or fold is not None:
        raise LeanError(f"layout {layout!r} / fold {fold!r}: only the FSD50K layout is supported")
    return load_fsd50k(root)
