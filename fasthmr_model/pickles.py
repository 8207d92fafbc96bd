"""Reading the numpy pickles of public datasets and SMPL files without running code from them.

A pickle names the classes it rebuilds, and unpickling imports and calls them: a hostile file runs
whatever it likes. The files this project reads (SMPL models, 3DPW and EMDB annotations) hold only dicts,
lists, strings and numpy arrays, so `NumpyUnpickler` resolves only numpy's array and scalar rebuilders
(under numpy 1's and 2's module names) and the helpers pickle itself uses for them, and refuses the rest.
Python 2 pickles (SMPL, 3DPW) are read with encoding="latin1", which numpy needs for their array bytes.
"""

from __future__ import annotations

import pickle

ALLOWED_GLOBALS = frozenset({
    ("__builtin__", "set"),
    ("builtins", "set"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
})


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that builds only containers, strings, numbers and numpy arrays.

    Subclasses may accept more classes by overriding `refuse` (called for every other class).
    """

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        return self.refuse(module, name)

    def refuse(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy data is allowed in this file")


def load_numpy_pickle(path) -> object:
    """The content of the pickle at `path` (Python 2 or 3), built by NumpyUnpickler."""
    with open(path, "rb") as stream:
        return NumpyUnpickler(stream, encoding="latin1").load()
