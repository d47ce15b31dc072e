"""Table 2's rows and the recipe each trains with, shared by ``dwstft reproduce table2``
and ``dwstft bench budget`` (what that reproduction costs).

Under ``recipe="auto"`` every row trains with the recipe its paper number came from
(:data:`SOURCE_RECIPES`): the baselines with ``baseline`` (weiaicunzai/pytorch-cifar100's,
whose CIFAR-100 results Table 2 quotes), STFTNet and the ReLPU network with ``paper``; any
other name forces one recipe on every row.
"""

from __future__ import annotations

from dwstft.models.stftnet import TABLE2
from dwstft.train.config import RECIPES

BASELINE_MODELS = ("shufflenet", "shufflenet_g3", "shufflenetv2", "mobilenet", "mobilenetv2")
#: Table 2's rows in the paper's order; ``shufflenet_g3`` (the network behind the ShuffleNet
#: row's CIFAR-100 number) follows ``shufflenet`` (the row's 800-feature g = 2 network).
TABLE2_MODELS = (
    *BASELINE_MODELS,
    "relpunet",
    *(f"stftnet_b{b}_f{f}" for b, f in TABLE2),
)
#: The parameter-matched STFTNet reading of the same rows (``--models`` may add them).
PARAMFIT_MODELS = tuple(f"stftnet_paramfit_b{b}_f{f}" for b, f in TABLE2)
RECIPE_CHOICES = ("auto", *RECIPES)
#: The recipe each network's paper number came from; any other network: ``paper``.
SOURCE_RECIPES = dict.fromkeys(BASELINE_MODELS, "baseline")


def recipe_for(model: str, recipe: str) -> str:
    """The recipe ``model`` trains with: its source recipe under ``"auto"``, else ``recipe``."""
    if recipe not in RECIPE_CHOICES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPE_CHOICES)}; got {recipe!r}")
    return SOURCE_RECIPES.get(model, "paper") if recipe == "auto" else recipe
