"""SHIM: removed at merge. The generator now lives in :mod:`lrgen.nets.generators`, its layers in
:mod:`lrgen.nets.layers`; this module re-exports every name other code uses."""

# SHIM: removed at merge
from lrgen.nets.generators import (  # noqa: F401
    ARCHS,
    Generator,
    GeneratorSpec,
    Params,
    build_generator,
    check_params,
    init_generator,
    load_torch_npz,
    params_from_torch_state_dict,
)
from lrgen.nets.layers import (  # noqa: F401
    _FORWARDS,
    _GRADS_W,
    _GRADS_X,
    _THIN,
    ConvTranspose,
    _conv_transpose_dilated,
    _conv_transpose_fwd,
    _conv_transpose_gemm,
    _conv_transpose_grad_w,
    _conv_transpose_grad_x,
    _conv_transpose_phase_gemm,
    _conv_transpose_subpixel,
    _forward_formulation,
    _grad_w_formulation,
    _grad_w_phase_gemm,
    _grad_x_formulation,
    _grad_x_phase_gemm,
    _interleave_phases,
    _patches,
    _phases,
    _subpixel_kernel,
    conv_transpose_s2,
    conv_transpose_s2_reference,
    legacy_torch_init,
)
