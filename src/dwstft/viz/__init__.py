"""Pictures (``dwstft viz``; matplotlib, the ``dwstft[viz]`` extra), each written as PNG by
:func:`dwstft._figure.save_figure`:

- :mod:`~dwstft.viz.basis`: the STFT basis kernels (the paper's Fig. 2);
- :mod:`~dwstft.viz.features`: an image's Depthwise-STFT maps;
- :mod:`~dwstft.viz.curves`: training curves of one or several runs (drawn by
  :mod:`dwstft.train.curves`, as each run's ``curves.png``);
- :mod:`~dwstft.viz.pareto`: a model-benchmark scatter (cost against speed or accuracy).
"""
