"""Reads a body model file in the SMPL format: our synthetic body (.npz), a user's SMPL .npz, or an
official SMPL .pkl, without chumpy, scipy or smplx.

Official SMPL .pkl files were pickled by Python 2 and hold chumpy objects (`chumpy.ch.Ch`,
`chumpy.reordering.*`) and a scipy.sparse joint regressor. chumpy does not import on Python 3.11
with numpy 2, and a pickle can run arbitrary code, so they are read with a restricted unpickler: it
builds numpy arrays, turns the chumpy and scipy.sparse classes such files hold (each by its full
name) into stand-ins that keep only their pickled state (then rebuilt as dense arrays, their declared
shapes and indices checked first), and refuses every other class.
"""

import dataclasses
from pathlib import Path

import numpy as np

from fasthmr_model.body.skeleton import JOINT_NAMES, NUM_BETAS, NUM_JOINTS, NUM_POSE_BASIS, PARENTS
from fasthmr_model.errors import BodyModelError
from fasthmr_model.pickles import MAX_ARRAY_BYTES, NumpyUnpickler, load_npz_arrays

REQUIRED_KEYS = ("v_template", "f", "J_regressor", "weights", "shapedirs", "posedirs", "kintree_table")
_WHAT_TO_DO = (
    "Give the synthetic body's .npz (fasthmr_model.body.synthetic.write_synthetic_body) or an SMPL model "
    "file such as SMPL_NEUTRAL.pkl / SMPL_NEUTRAL.npz from https://smpl.is.tue.mpg.de."
)


@dataclasses.dataclass(frozen=True)
class BodyModelArrays:
    """A body model in the SMPL format, as read-only dense numpy arrays under SMPL's key names.

    model_name: the file's stored model_name, else the file name's stem (e.g. "SMPL_NEUTRAL").
    v_template (V, 3) float64: rest-pose vertices, metres.
    f (F, 3) int64: triangles, vertex indices.
    J_regressor (24, V) float64: rest joints = J_regressor @ vertices.
    weights (V, 24) float64: linear-blend-skinning weights.
    shapedirs (V, 3, 10) float64: shape blend shapes (files with more keep their first 10).
    posedirs (V, 3, 207) float64: pose correctives, driven by (R - I) of joints 1..23.
    kintree_table (2, 24) int64: row 0 the parent of each joint (-1 at the root), row 1 the joint ids.
    """

    model_name: str
    v_template: np.ndarray
    f: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    kintree_table: np.ndarray

    @property
    def parents(self):
        """(24,) int64: each joint's parent, -1 for the root."""
        return self.kintree_table[0]

    @property
    def num_vertices(self):
        return self.v_template.shape[0]

    def as_dict(self):
        """The arrays under SMPL's key names (plus model_name as a 0-d string array), e.g. for np.savez."""
        arrays = {key: getattr(self, key) for key in REQUIRED_KEYS}
        arrays["model_name"] = np.array(self.model_name)
        return arrays


class _PickledState:
    """Base of the stand-ins below: built without arguments, keeps the pickled state, runs no code."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        self.state = state


class _ChumpyObject(_PickledState):
    """Stand-in for any chumpy class: keeps the pickled state dict, never imports chumpy.

    A plain Ch holds its array under 'x'; Select, Reshape and transpose hold their input Ch under
    'a' and their reordering parameters beside it.
    """

    chumpy_class = "chumpy.ch.Ch"

    def to_array(self):
        """The array this chumpy object evaluates to."""
        state = getattr(self, "state", None)
        if not isinstance(state, dict):
            raise BodyModelError(f"a pickled {self.chumpy_class} object has no state to read an array from")
        kind = self.chumpy_class.rsplit(".", 1)[-1]
        if "x" in state:
            return _dense(state["x"])
        if kind == "Select" and "a" in state:
            source = _dense(state["a"]).ravel()
            indices = np.asarray(state.get("idxs"))
            inside = indices.size == 0 or 0 <= indices.min() <= indices.max() < source.size
            if indices.dtype.kind not in "iu" or not inside:
                raise BodyModelError(f"a pickled {self.chumpy_class} selects {indices.dtype} indices outside its "
                                     f"{source.size} values")
            selected = source[indices]
            return selected.reshape(state["preferred_shape"]) if "preferred_shape" in state else selected
        if kind == "Reshape" and "a" in state:
            return _dense(state["a"]).reshape(state["newshape"])
        if kind == "transpose" and "a" in state:
            return np.transpose(_dense(state["a"]), axes=state.get("axes"))
        raise BodyModelError(
            f"a pickled {self.chumpy_class} object cannot be turned into an array without chumpy"
        )


class _SparseMatrix(_PickledState):
    """Stand-in for a scipy.sparse csc/csr matrix: keeps the pickled state and densifies it."""

    sparse_class = "scipy.sparse.csc_matrix"

    def to_array(self):
        """The dense (rows, columns) float64 array of the compressed sparse matrix."""
        state = getattr(self, "state", None)
        if not isinstance(state, dict) or not {"data", "indices", "indptr"} <= state.keys():
            raise BodyModelError(f"a pickled {self.sparse_class} has no data/indices/indptr to rebuild it from")
        rows, columns = (int(size) for size in (state["_shape"] if "_shape" in state else state["shape"]))
        data = np.asarray(state["data"], dtype=np.float64).ravel()
        indices = np.asarray(state["indices"], dtype=np.int64).ravel()
        indptr = np.asarray(state["indptr"], dtype=np.int64).ravel()
        compressed_columns = self.sparse_class.rsplit(".", 1)[-1].startswith("csc")
        lines, line_length = (columns, rows) if compressed_columns else (rows, columns)
        # The declared shape is only a claim: check it, and that the indices stay inside it, before allocating.
        if min(rows, columns) < 0 or rows * columns * 8 > MAX_ARRAY_BYTES:
            raise BodyModelError(f"a pickled {self.sparse_class} declares the shape ({rows}, {columns}), beyond "
                                 f"the {MAX_ARRAY_BYTES}-byte limit of a dense body model array")
        inside = indices.size == 0 or 0 <= indices.min() <= indices.max() < line_length
        if (len(indptr) != lines + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices)
                or len(indices) != len(data) or not inside):
            raise BodyModelError(f"a pickled {self.sparse_class} of shape ({rows}, {columns}) has inconsistent "
                                 "indptr/indices/data (indices outside the shape)")
        dense = np.zeros((lines, line_length))
        # Each compressed line (a column for csc, a row for csr) owns data[indptr[i]:indptr[i + 1]].
        line_of_entry = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        np.add.at(dense, (line_of_entry, indices), data)
        return dense.T if compressed_columns else dense


def _dense(value):
    """A numpy array from a pickled value: an array, a chumpy stand-in or a sparse stand-in."""
    if isinstance(value, (_ChumpyObject, _SparseMatrix)):
        return value.to_array()
    return np.asarray(value)


# The classes official SMPL pickles hold, by full name (scipy moved its sparse classes over the years).
CHUMPY_CLASSES = (
    "chumpy.ch.Ch", "chumpy.reordering.Select", "chumpy.reordering.Reshape", "chumpy.reordering.transpose",
)
SPARSE_CLASSES = (
    "scipy.sparse.csc.csc_matrix", "scipy.sparse.csr.csr_matrix",
    "scipy.sparse._csc.csc_matrix", "scipy.sparse._csr.csr_matrix",
    "scipy.sparse._csc.csc_array", "scipy.sparse._csr.csr_array",
    "scipy.sparse._arrays.csc_array", "scipy.sparse._arrays.csr_array",
)


def _stand_ins(base, attribute, full_names):
    """{(module, name): a subclass of `base` that remembers in `attribute` which class it stands in for}."""
    return {tuple(full_name.rsplit(".", 1)): type(base.__name__, (base,), {attribute: full_name})
            for full_name in full_names}


class _SmplUnpickler(NumpyUnpickler):
    """An unpickler that only builds numpy arrays, chumpy stand-ins and sparse stand-ins."""

    extra_globals = {**_stand_ins(_ChumpyObject, "chumpy_class", CHUMPY_CLASSES),
                     **_stand_ins(_SparseMatrix, "sparse_class", SPARSE_CLASSES)}
    content = "numpy arrays, chumpy Ch/Select/Reshape/transpose objects and scipy csc/csr matrices"


def _read_pickle(path):
    """{key: value} from an SMPL .pkl, with chumpy and sparse values turned into dense arrays."""
    try:
        with open(path, "rb") as stream:
            content = _SmplUnpickler(stream, encoding="latin1").load()
    except BodyModelError:
        raise
    except Exception as error:  # a corrupt or hostile pickle fails in many ways; all mean "unreadable"
        raise BodyModelError(
            f"Cannot read the body model pickle {path}: {error}. It must be an SMPL model file (a dict of "
            f"arrays). {_WHAT_TO_DO}"
        ) from error
    if not isinstance(content, dict):
        raise BodyModelError(
            f"The body model pickle {path} holds a {type(content).__name__}, not a dict of arrays. {_WHAT_TO_DO}"
        )
    arrays = {}
    for key in REQUIRED_KEYS:
        if key in content:
            try:
                arrays[key] = _dense(content[key])
            except Exception as error:  # ours, or numpy's on a crafted reshape/transpose: all mean "unreadable"
                raise BodyModelError(
                    f"Cannot read '{key}' of the body model pickle {path}: {error}. {_WHAT_TO_DO}"
                ) from None
    if "model_name" in content:
        arrays["model_name"] = np.asarray(content["model_name"])
    return arrays


def _read_npz(path):
    """{key: array} from an .npz (no pickled objects allowed)."""
    try:
        return load_npz_arrays(path, names=(*REQUIRED_KEYS, "model_name"))
    except ValueError as error:
        raise BodyModelError(
            f"Cannot read the body model {path}: {error}. An .npz must hold plain numeric arrays (no pickled "
            f"objects; save a sparse J_regressor densely). {_WHAT_TO_DO}"
        ) from error
    except Exception as error:  # not a zip, a truncated member, ...: all mean "unreadable"
        raise BodyModelError(
            f"Cannot read the body model {path} ({type(error).__name__}: {error}). {_WHAT_TO_DO}"
        ) from error


def _checked(path, name, array, shape, dtype):
    """`array` as a read-only `dtype` array after checking its shape (None in `shape` = any size)."""
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        expected = "(" + ", ".join("N" if size is None else str(size) for size in shape) + ")"
        raise BodyModelError(
            f"'{name}' in the body model {path} has shape {array.shape}, expected {expected} for an SMPL-format "
            f"body with {NUM_JOINTS} joints. {_WHAT_TO_DO}"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise BodyModelError(f"'{name}' in the body model {path} is not numeric ({array.dtype}). {_WHAT_TO_DO}")
    array = np.array(array, dtype=dtype)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise BodyModelError(f"'{name}' in the body model {path} contains NaN or infinite values. {_WHAT_TO_DO}")
    array.flags.writeable = False
    return array


def _parents_from_kintree(path, kintree_table):
    """(2, 24) int64 kintree table with -1 at the root, checked against SMPL's joint tree."""
    table = np.array(kintree_table, dtype=np.int64)
    # SMPL stores the root's parent as the uint32 maximum 4294967295; ours stores -1.
    table[0, 0] = -1
    if not np.array_equal(table[1], np.arange(NUM_JOINTS)) or not np.array_equal(table[0], PARENTS):
        raise BodyModelError(
            f"The kinematic tree (kintree_table) of the body model {path} is not SMPL's 24-joint tree "
            f"({', '.join(JOINT_NAMES[:3])}, ...). {_WHAT_TO_DO}"
        )
    table.flags.writeable = False
    return table


def load_body_model_file(path):
    """Loads a body model file (.npz or SMPL .pkl) into BodyModelArrays (float64, dense).

    Raises BodyModelError if the file is missing, has another extension, cannot be read, lacks one
    of the SMPL keys, or has arrays of the wrong shape (e.g. not 24 joints, fewer than 10 shape
    components, faces pointing past the vertices).
    """
    path = Path(path)
    if not path.is_file():
        raise BodyModelError(f"The body model file {path} does not exist. {_WHAT_TO_DO}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(path)
    elif suffix == ".pkl":
        arrays = _read_pickle(path)
    else:
        raise BodyModelError(
            f"The body model file {path} has the extension '{path.suffix}'; expected .npz or .pkl. {_WHAT_TO_DO}"
        )

    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise BodyModelError(
            f"The body model {path} lacks {', '.join(missing)}: it is not an SMPL-format file. {_WHAT_TO_DO}"
        )

    v_template = _checked(path, "v_template", arrays["v_template"], (None, 3), np.float64)
    vertex_count = v_template.shape[0]
    faces = _checked(path, "f", arrays["f"], (None, 3), np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= vertex_count):
        raise BodyModelError(
            f"The faces 'f' of the body model {path} index vertices outside 0..{vertex_count - 1}. {_WHAT_TO_DO}"
        )
    shapedirs = np.asarray(arrays["shapedirs"])
    if shapedirs.ndim == 3:
        if shapedirs.shape[2] < NUM_BETAS:
            raise BodyModelError(
                f"'shapedirs' in the body model {path} has {shapedirs.shape[2]} shape components; at least {NUM_BETAS} "
                f"are needed. {_WHAT_TO_DO}"
            )
        shapedirs = shapedirs[:, :, :NUM_BETAS]

    if "model_name" in arrays and arrays["model_name"].ndim == 0 and arrays["model_name"].dtype.kind == "U":
        model_name = str(arrays["model_name"])
    else:
        model_name = path.stem
    return BodyModelArrays(
        model_name=model_name,
        v_template=v_template,
        f=faces,
        J_regressor=_checked(path, "J_regressor", arrays["J_regressor"], (NUM_JOINTS, vertex_count), np.float64),
        weights=_checked(path, "weights", arrays["weights"], (vertex_count, NUM_JOINTS), np.float64),
        shapedirs=_checked(path, "shapedirs", shapedirs, (vertex_count, 3, NUM_BETAS), np.float64),
        posedirs=_checked(path, "posedirs", arrays["posedirs"], (vertex_count, 3, NUM_POSE_BASIS), np.float64),
        kintree_table=_parents_from_kintree(
            path, _checked(path, "kintree_table", arrays["kintree_table"], (2, NUM_JOINTS), np.int64)
        ),
    )
