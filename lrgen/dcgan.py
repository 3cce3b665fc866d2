"""SHIM: removed at merge. The batch-norm DCGAN generator now lives in
:mod:`lrgen.nets.generators`, the discriminator, encoder and VGG features in
:mod:`lrgen.nets.networks`, the 5×5 layers in :mod:`lrgen.nets.layers`; this module re-exports
every name other code uses."""

# SHIM: removed at merge
from lrgen.nets.generators import DCGANGenerator, fold_generator, num_layers, widths  # noqa: F401
from lrgen.nets.layers import (  # noqa: F401
    BN_EPS,
    BN_MOMENTUM,
    Conv5,
    Norm,
    conv5_s2,
    conv5_s2_reference,
    conv_transpose5_s2,
    conv_transpose5_s2_reference,
)
from lrgen.nets.layers import INIT_DCGAN as _INIT  # noqa: F401
from lrgen.nets.networks import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    LEAK,
    VGG19_LAYERS,
    VGG_LAYER_NAMES,
    Discriminator,
    Encoder,
    EncoderSpec,
    load_vgg19,
    vgg_features,
)
