"""The computing core: network, diffusion, losses, metrics, tiled inference, model files, data, training.

Nothing under this package imports Qt or napari (a test enforces it), so it runs headless on a cluster.
"""
