"""The command line of the PyTorch reference (``<shared>/bench/gmlr_torch.py``), in one place.

Both side-by-side benchmarks (:mod:`benchmarks.vs_torch`, :mod:`benchmarks.accelerator_check`)
run the reference in the original setting: rotating MNIST seq1, the original weights and masks,
80 % missing, joint update, rank 2 ``pca``.
"""

from __future__ import annotations

from pathlib import Path


def command(torch_python: str, shared: Path, *, iterations: int, mode: str, device: str, extra: list[str]) -> list[str]:
    """The reference's argv for ``iterations`` iterations in ``mode`` on ``device``, plus ``extra``."""
    return [
        torch_python,
        str(shared / "bench/gmlr_torch.py"),
        str(shared / "data/gmlr/rot_mnist/seq1"),
        "--measurement=missing",
        "--missing-ratio=0.8",
        "--update=joint",
        "--rank=2",
        "--rank-type=pca",
        f"--iters={iterations}",
        f"--device={device}",
        f"--mode={mode}",
        *extra,
    ]
