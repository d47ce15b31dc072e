"""Benchmarks: the layer's execution paths (``layer``) and whole networks (``models``).

Every figure is measured side by side in one run and reported as ratios, because absolute
times on a shared CPU drift between runs."""
