"""The classifier interface every model in the registry shares (timm's conventions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dwstft.models.features import FeatureInfoList, feature_info, forward_intermediates


class ImageClassifier(nn.Module):
    """Base class: subclasses build ``self.features`` as (N, C, H, W) → (N, F, h, w).

    The head is global average pooling then a linear layer ``F → num_classes``; softmax
    lives in the loss. Attributes: ``num_classes``, ``num_features`` (F, the pre-logit
    width).
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.head: nn.Module = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) → (N, num_features, h, w) feature map."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, F, h, w) → logits (N, num_classes), or pooled features (N, F) if pre_logits."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) → logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))

    @property
    def feature_info(self) -> FeatureInfoList:
        """One entry per stage end (channels, reduction, module name), with timm's
        ``channels()``, ``reduction()``, ``module_name()``, ``get_dicts()``; see
        :class:`dwstft.models.features.FeatureInfoList`."""
        return feature_info(self)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        stop_early: bool = False,
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: feature maps at the stage ends ``indices``
        (None: all; n: the last n; or stage numbers), and the final feature map unless
        ``intermediates_only``. See :func:`dwstft.models.features.forward_intermediates`."""
        return forward_intermediates(self, x, indices, stop_early, intermediates_only)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0 → identity), on
        the device and in the dtype of the model's parameters."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        param = next(self.parameters())
        self.head = self._make_head(num_classes).to(device=param.device, dtype=param.dtype)
