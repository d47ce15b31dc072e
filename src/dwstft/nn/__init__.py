"""The Depthwise-STFT layer family, written once for 1, 2 and 3 dimensions.

- ``basis``: frequency points and kernels for any dimension (the 2-D bank is the d = 2
  case), kernel-size validation, the separable 1-D filters;
- ``bank``: ``FixedBank``, the contract every fixed bank module keeps;
- ``functional``: the functional forms and every execution path; ``"auto"`` is decided in
  one function, ``functional.choose_impl``;
- ``separable``: the 2-D bank as shift-and-add passes;
- ``layers``: ``DepthwiseSTFT1d`` / ``DepthwiseSTFT`` / ``DepthwiseSTFT3d`` and the
  separable layers (``.fold()``) over one base class each;
- ``multiscale``: ``MultiScaleSTFTSeparable`` and ``ReLPU``;
- ``model_ops``: ``set_impl`` and ``fold_model`` over a whole model.

The public names are re-exported by ``dwstft`` itself.
"""
