"""Deployment: a trained model as the fastest inference graph that computes what it
computes, written as ONNX or TorchScript and checked against PyTorch.

- :mod:`~dwstft.deploy.forms`: the two forms of a Depthwise-STFT separable layer (folded
  dense conv, or bank + 1×1), chosen by timing both in onnxruntime;
- :mod:`~dwstft.deploy.rewrites`: ``torch.fx`` rewrites (BatchNorm folding, skip scales)
  into the deployment graph;
- :mod:`~dwstft.deploy.ort_fusion`: Conv → Add → activation as onnxruntime's FusedConv;
- :mod:`~dwstft.deploy.export`: ONNX / TorchScript export of a model (``export_model``);
- :mod:`~dwstft.deploy.verify`: the exported file against PyTorch;
- :mod:`~dwstft.deploy.quantize`: int8 static quantization and ONNX accuracy;
- :mod:`~dwstft.deploy.runtime`: onnxruntime sessions and their timing.

The package takes a model, never a checkpoint: rebuilding a model from a run is
:mod:`dwstft.train.checkpoint`'s. It imports neither ``train`` nor ``bench``.
"""
