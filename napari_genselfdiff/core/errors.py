"""Exceptions whose messages are shown to users as they are (CLI and napari notifications)."""


class GenSelfDiffError(Exception):
    """Base class: the message names the problem and what to do about it."""


class ImageInputError(GenSelfDiffError, ValueError):
    """An image cannot be segmented as given (wrong shape, channels, dtype or unreadable)."""


class ModelFileError(GenSelfDiffError, ValueError):
    """A model file is missing, corrupt, pickled, of another schema, or does not fit its architecture."""


class MaskInputError(GenSelfDiffError, ValueError):
    """A mask or labels array does not fit its image or the model's classes."""


class TrainingInputError(GenSelfDiffError, ValueError):
    """Training cannot start or go on as asked: no usable data, an unwritable run folder, a resume
    that does not fit the configuration. The message names the problem and what to do."""
