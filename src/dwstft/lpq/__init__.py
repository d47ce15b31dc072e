"""Local Phase Quantization: the descriptor (``descriptor``) and its compiled fast pass
(``fused``). ``dwstft.lpq`` is the function ``lpq`` itself (the package's module type keeps
it so when this package is imported)."""

from dwstft.lpq.descriptor import lpq, lpq_operators

__all__ = ["lpq", "lpq_operators"]
