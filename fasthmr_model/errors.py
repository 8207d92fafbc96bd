"""The one exception family of fasthmr_model: every library error says what went wrong and what to do."""


class FastHMRError(Exception):
    """Base of every error raised on purpose by fasthmr_model (and caught by the node and the CLI)."""


class BundleError(FastHMRError):
    """A model bundle is missing, corrupt, of another format version, or does not match its manifest."""


class CheckpointError(FastHMRError):
    """A checkpoint cannot be read, names a global it may not (refused, never run), or has unknown, missing or
    mis-shaped tensors."""


class InputError(FastHMRError):
    """An image, mask, box or camera given to the library is malformed."""


class BodyModelError(FastHMRError):
    """A body model file cannot be read or is not in the SMPL format."""
