"""The ReLPU-based network of Table 2 (the paper's ref. [14]).

The paper forms it by replacing the layers of its own network (Fig. 3c) with ReLPU layers
and reports 256 pre-logit features and 3.08M parameters. Here: STFTNet with every block's
STFT-then-expansion replaced by ReLPU (Depthwise-STFT, ReLU on the coefficients, 1×1),
f = 256, and the bottleneck width b = 44 chosen so the trainable parameters at 100 classes
(3,109,412) sit within 1% of the paper's 3.08M, the same budget-matching used for the
baselines. The paper does not give b.
"""

from __future__ import annotations

from dwstft.models.registry import PaperReference, register_model
from dwstft.models.stftnet import STFTNet, spec_options, stftnet

RELPU_BOTTLENECK = 44
RELPU_FEATURES = 256


def relpunet(num_classes: int = 10, in_chans: int = 3, **kwargs: object) -> STFTNet:
    """Table 2 row 'ReLPU based [14]': STFTNet(b=44, f=256) with ReLPU mixing."""
    return stftnet(RELPU_BOTTLENECK, RELPU_FEATURES, num_classes, in_chans, mixer="relpu", **kwargs)


relpunet.model_options = spec_options("mixer")
register_model(
    relpunet, paper=PaperReference(params_m=3.08, features=256, cifar10=92.20, cifar100=70.20)
)
