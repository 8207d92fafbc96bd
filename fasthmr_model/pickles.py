"""Reading numpy files made elsewhere (SMPL models, 3DPW and EMDB pickles, AMASS and SMPL .npz) without
running code from them or allocating what they merely declare.

A pickle names the callables that rebuild its objects, and unpickling calls them: a hostile file runs
whatever it names. The pickles this project reads hold only dicts, lists, strings and numpy arrays, so
`NumpyUnpickler` resolves a table of exact (module, name) pairs (numpy's array and scalar rebuilders under
numpy 1's and 2's module names, and the helpers pickle itself uses for them) and refuses every other name,
dotted attribute walks such as `numpy.lib._format_impl` + `os.system` included. An array's pickle and an
.npy header declare a shape that numpy allocates before reading any data, so declared sizes are checked
against MAX_ARRAY_BYTES first. Python 2 pickles (SMPL, 3DPW) are read with encoding="latin1", which numpy
needs for their array bytes.
"""

from __future__ import annotations

import codecs
import copyreg
import math
import operator
import pickle
import zipfile

import numpy as np

# Far above any real array (SMPL's posedirs: 34 MB; an hour of 120 Hz AMASS SMPL-H poses: 0.5 GB), far below
# what a declared (1e6, 1e6) shape asks for.
MAX_ARRAY_BYTES = 2 << 30

# The functions this numpy pickles arrays and scalars with (their module differs between numpy 1 and 2).
_numpy_reconstruct = np.zeros(1).__reduce__()[0]
_numpy_scalar = np.float64(0).__reduce__()[0]
_numpy_frombuffer = np.zeros(1).__reduce_ex__(5)[0]


def _declared_bytes(shape, dtype) -> int:
    """Bytes an array of the declared `shape` and `dtype` takes; UnpicklingError beyond MAX_ARRAY_BYTES."""
    try:
        dimensions = tuple(shape)
    except TypeError:
        dimensions = (shape,)
    if not all(operator.index(size) >= 0 for size in dimensions):
        raise pickle.UnpicklingError(f"an array declares the shape {dimensions!r}")
    size = math.prod(operator.index(size) for size in dimensions) * np.dtype(dtype).itemsize
    if size > MAX_ARRAY_BYTES:
        raise pickle.UnpicklingError(
            f"an array declares the shape {dimensions} of {np.dtype(dtype)} ({size} bytes), more than the "
            f"{MAX_ARRAY_BYTES}-byte limit: refused before allocating it")
    return size


class _BoundedArray(np.ndarray):
    """What a pickle's `numpy.ndarray` resolves to: every way a pickle can size an array (calling the class,
    `_reconstruct`, `__setstate__`) is checked against MAX_ARRAY_BYTES before numpy allocates.

    `NumpyUnpickler.load` hands these back as plain ndarrays.
    """

    def __new__(cls, shape, dtype=float, *args, **kwargs):
        _declared_bytes(shape, dtype)
        return super().__new__(cls, shape, dtype, *args, **kwargs)

    def __setstate__(self, state):
        # (version, shape, dtype, is_fortran, data); numpy before 1.0 wrote it without the version.
        shape, dtype, data = state[-4], state[-3], state[-1]
        size = _declared_bytes(shape, dtype)
        # numpy checks raw bytes against the shape itself, but allocates an object array before filling it
        # from the pickled list.
        if np.dtype(dtype).hasobject and (not isinstance(data, list) or len(data) * np.dtype(dtype).itemsize != size):
            raise pickle.UnpicklingError(f"an object array declares the shape {tuple(shape)} but pickles other items")
        super().__setstate__(state)


def _reconstruct(subtype, shape, dtype):
    """numpy's `_reconstruct` (an empty array that BUILD then fills), for our bounded ndarray only."""
    if subtype is not _BoundedArray:
        raise pickle.UnpicklingError(f"numpy's _reconstruct may rebuild only numpy.ndarray here, not {subtype!r}")
    _declared_bytes(shape, dtype)
    return _numpy_reconstruct(subtype, shape, dtype)


def _latin1_bytes(text, encoding):
    """pickle's `_codecs.encode` for bytes under protocols 2-3, limited to the codec it uses."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with the codec {encoding!r}: pickles use latin1")
    return codecs.encode(text, "latin1")


# Exactly what numpy arrays, numpy scalars and sets need in Python 2 and 3 pickles, numpy 1 and 2 (the
# protocol 5 `_frombuffer` sizes its array from the bytes it is given). Python 2 pickles name `__builtin__`
# and `copy_reg`: find_class sees names before pickle's compatibility mapping.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _BoundedArray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("_codecs", "encode"): _latin1_bytes,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
}


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that builds only containers, strings, numbers and numpy arrays.

    Subclasses may accept more exact (module, name) pairs in `extra_globals` (e.g. stand-in classes that
    only keep their pickled state); `content` says in refusals what the file may hold.
    """

    extra_globals: dict = {}
    content = "numpy data"

    def find_class(self, module: str, name: str):
        target = ALLOWED_GLOBALS.get((module, name), self.extra_globals.get((module, name)))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: this file may hold only {self.content}; nothing it names "
                f"beyond that is imported or run")
        return target

    def load(self):
        return _plain(super().load(), set())


def _plain(value, seen: set):
    """`value` with every bounded array in it (in dicts, lists, tuples, object arrays and the state of
    stand-in objects) a plain ndarray again; containers are changed in place, `seen` breaks cycles."""
    if isinstance(value, np.ndarray):
        if type(value) is _BoundedArray:
            value = value.view(np.ndarray)
        if value.dtype.hasobject and id(value) not in seen:
            seen.add(id(value))
            for index in np.ndindex(value.shape):
                value[index] = _plain(value[index], seen)
        return value
    if isinstance(value, tuple):
        return tuple(_plain(item, seen) for item in value)
    if isinstance(value, (dict, list)) and id(value) not in seen:
        seen.add(id(value))
        for key in list(value.keys()) if isinstance(value, dict) else range(len(value)):
            value[key] = _plain(value[key], seen)
    elif isinstance(getattr(value, "__dict__", None), dict):
        _plain(value.__dict__, seen)
    return value


def load_numpy_pickle(path) -> object:
    """The content of the pickle at `path` (Python 2 or 3), built by NumpyUnpickler.

    Raises pickle.UnpicklingError (refused names, oversized arrays), EOFError, OSError and whatever a
    corrupt pickle makes numpy or pickle raise: callers turn them into their own error naming the file.
    """
    with open(path, "rb") as stream:
        return NumpyUnpickler(stream, encoding="latin1").load()


def load_npz_arrays(path, names=None) -> dict[str, np.ndarray]:
    """{name: array} of the .npy members of the .npz at `path` (all, or those in `names`), as
    numpy.load(allow_pickle=False) reads them, after checking each member's declared size (against
    MAX_ARRAY_BYTES, the members together, and against the member's own length) before allocating it.

    Raises ValueError for pickled objects, oversized or truncated members and non-.npy members, and
    zipfile.BadZipFile / OSError / EOFError for damaged files.
    """
    arrays, total = {}, 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            name = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
            if names is not None and name not in names:
                continue
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
                else:
                    raise ValueError(f"member {member.filename} is an .npy of version {version}; expected 1.0 or 2.0")
                if dtype.hasobject:
                    raise ValueError(f"member {member.filename} holds pickled Python objects, which are never loaded")
                try:
                    size = _declared_bytes(shape, dtype)
                except pickle.UnpicklingError as error:
                    raise ValueError(f"member {member.filename}: {error}") from None
                total += size
                if size > member.file_size - stream.tell() or total > MAX_ARRAY_BYTES:
                    raise ValueError(
                        f"member {member.filename} declares {shape} of {dtype} ({size} bytes) but holds "
                        f"{member.file_size - stream.tell()} bytes, or the file's arrays exceed "
                        f"{MAX_ARRAY_BYTES} bytes")
            with archive.open(member) as stream:
                arrays[name] = np.lib.format.read_array(stream, allow_pickle=False)
    return arrays
