"""lrgen: low-rank generative video reconstruction in JAX.

A video x_1..x_T is represented by a generator G and one latent code z_t per frame; the T×k
code matrix Z is constrained to rank r and to change smoothly in time (Hyder & Asif, "Generative
Models for Low-Rank Video Representation and Reconstruction", IEEE TSP 2020, arXiv:1902.11132).

Modules, in the order data flows through them:

* :mod:`lrgen.io`       frames in and out (folders, videos, arrays).
* :mod:`lrgen.measure`  measurement operators A_t with forward and adjoint.
* :mod:`lrgen.models`   the DCGAN-style generator (flax.linen) and original-weight loading.
* :mod:`lrgen.lowrank`  rank-r projections of Z.
* :mod:`lrgen.recover`  the jitted, vmapped recovery loop.
* :mod:`lrgen.metrics`  PSNR and SSIM.
* :mod:`lrgen.report`   grids, videos, curves and latent plots.
"""

__version__ = "0.1.0"
