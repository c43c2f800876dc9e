"""napari-genselfdiff: GenSelfDiff-HIS segmentation of H&E images for napari, a CLI and a trainer.

The computing core lives in :mod:`napari_genselfdiff.core` and imports neither Qt nor napari; the
napari glue lives in :mod:`napari_genselfdiff.plugin`, the command line in :mod:`napari_genselfdiff.cli`.
"""

__version__ = "0.1.0"
