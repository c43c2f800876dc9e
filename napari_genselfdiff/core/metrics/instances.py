"""Moved: nucleus splitting lives in :mod:`napari_genselfdiff.core.inference.instances`.

This name stays importable only for the experiment scripts that were running when the module moved
(``src_train/experiments/recipe.py`` and ``active_learning.py``); new code imports
``core.inference.instances``. Remove this file once those scripts import the new path.
"""

from ..inference.instances import label_instances

__all__ = ["label_instances"]
