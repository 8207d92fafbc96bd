"""The body model: the synthetic body's geometry and determinism, loading .npz and chumpy-era .pkl
files without chumpy, clear errors for bad files, and numpy LBS against smplx."""

import contextlib
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fasthmr_model.body import BodyModel, load_body_model_file, load_smplx_layer
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, KinematicTree
from fasthmr_model.body.synthetic import (
    MODEL_NAME,
    SHAPE_COMPONENTS,
    build_synthetic_body,
    write_npz_atomically,
    write_synthetic_body,
)
from fasthmr_model.errors import BodyModelError, InputError


@pytest.fixture(scope="module")
def body_arrays():
    return build_synthetic_body()


@pytest.fixture(scope="module")
def body_path(tmp_path_factory):
    return write_synthetic_body(tmp_path_factory.mktemp("body") / "synthetic_body.npz")


def _random_inputs(rng, batch):
    betas = rng.normal(size=(batch, 10))
    axis_angles = rng.normal(scale=0.5, size=(batch, NUM_JOINTS, 3))
    transl = rng.normal(size=(batch, 3))
    return betas, axis_angles, transl


# --- the synthetic body ---------------------------------------------------------------------------


def test_same_code_writes_byte_identical_files(tmp_path):
    first = write_synthetic_body(tmp_path / "a" / "body.npz")
    second = write_synthetic_body(tmp_path / "b" / "body.npz")
    assert first.read_bytes() == second.read_bytes()
    # Nothing else is left behind (the temporary file was moved into place).
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a", "b", "body.npz", "body.npz"]


def test_synthetic_body_has_smpl_keys_shapes_and_its_own_name(body_arrays):
    vertex_count = body_arrays["v_template"].shape[0]
    assert 1000 <= vertex_count <= 3000
    assert body_arrays["v_template"].shape == (vertex_count, 3)
    assert body_arrays["f"].dtype == np.int64 and body_arrays["f"].shape[1] == 3
    assert body_arrays["J_regressor"].shape == (NUM_JOINTS, vertex_count)
    assert body_arrays["weights"].shape == (vertex_count, NUM_JOINTS)
    assert body_arrays["shapedirs"].shape == (vertex_count, 3, 10)
    assert body_arrays["posedirs"].shape == (vertex_count, 3, 207)
    np.testing.assert_array_equal(body_arrays["kintree_table"], [PARENTS, range(NUM_JOINTS)])
    assert str(body_arrays["model_name"]) == MODEL_NAME == "fasthmr-synthetic-body-v1"


def test_mesh_is_closed_outward_and_human_sized(body_arrays):
    vertices, faces = body_arrays["v_template"], body_arrays["f"]
    directed_edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edge_set = {tuple(edge) for edge in directed_edges}
    assert len(edge_set) == len(directed_edges), "an edge is used twice in the same direction"
    assert all((b, a) in edge_set for a, b in edge_set), "an edge has no twin: the surface has a hole"
    corners = vertices[faces]
    signed_volume = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0
    assert 0.05 < signed_volume < 0.09  # m^3, positive: faces point outwards; about 50-90 kg
    height = np.ptp(vertices[:, 1])
    assert 1.65 < height < 1.8
    assert np.ptp(vertices[:, 0]) > 1.6  # T-pose arm span


def test_joint_regressor_and_weights_are_convex_and_joints_are_shaped_like_smpls(body_arrays):
    regressor, weights = body_arrays["J_regressor"], body_arrays["weights"]
    assert regressor.min() >= 0.0 and weights.min() >= 0.0
    np.testing.assert_allclose(regressor.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    joints = regressor @ body_arrays["v_template"]
    np.testing.assert_allclose(joints[JOINT_INDEX["pelvis"]], [0.0, -0.23, 0.0], atol=1e-12)
    np.testing.assert_allclose(joints[JOINT_INDEX["left_elbow"]], [0.435, 0.215, -0.03], atol=1e-12)
    for name in JOINT_NAMES:
        if name.startswith("left_"):
            right = joints[JOINT_INDEX["right_" + name[5:]]]
            assert joints[JOINT_INDEX[name]][0] > 0.05
            np.testing.assert_allclose(joints[JOINT_INDEX[name]], right * (-1.0, 1.0, 1.0), atol=1e-12)
    chain = ["left_ankle", "left_knee", "left_hip", "pelvis", "spine1", "spine2", "spine3", "neck", "head"]
    heights = [joints[JOINT_INDEX[name], 1] for name in chain]
    assert heights == sorted(heights)


def test_skinning_weights_blend_smoothly_across_the_elbow(body_arrays):
    vertices, weights = body_arrays["v_template"], body_arrays["weights"]
    elbow, shoulder = JOINT_INDEX["left_elbow"], JOINT_INDEX["left_shoulder"]
    arm = (vertices[:, 0] > 0.3) & (vertices[:, 0] < 0.6)
    order = np.argsort(vertices[arm, 0])
    elbow_weight = weights[arm, elbow][order]
    shoulder_weight = weights[arm, shoulder][order]
    np.testing.assert_allclose(elbow_weight + shoulder_weight, 1.0, atol=1e-12)
    assert elbow_weight[0] == 0.0 and elbow_weight[-1] == 1.0
    blended = (elbow_weight > 0.0) & (elbow_weight < 1.0)
    assert blended.sum() >= 3 * 14  # several rings share the joint
    assert np.all(np.diff(elbow_weight) >= -1e-12)


def test_shape_blend_shapes_mean_what_they_say(body_arrays):
    vertices, shapedirs = body_arrays["v_template"], body_arrays["shapedirs"]
    regressor = body_arrays["J_regressor"]
    assert [component.name for component in SHAPE_COMPONENTS][:3] == ["stature", "torso_girth", "leg_length"]
    assert np.linalg.matrix_rank(shapedirs.reshape(-1, 10)) == 10

    def shaped(beta_index, value):
        betas = np.zeros(10)
        betas[beta_index] = value
        shaped_vertices = vertices + shapedirs @ betas
        return shaped_vertices, regressor @ shaped_vertices

    def bone(joints, start, end):
        return np.linalg.norm(joints[JOINT_INDEX[end]] - joints[JOINT_INDEX[start]])

    taller, _ = shaped(0, 1.0)
    assert 0.06 < np.ptp(taller[:, 1]) - np.ptp(vertices[:, 1]) < 0.09
    _, long_legs = shaped(2, 1.0)
    _, mean_joints = shaped(2, 0.0)
    assert bone(long_legs, "left_hip", "left_ankle") > 1.04 * bone(mean_joints, "left_hip", "left_ankle")
    _, long_arms = shaped(4, 1.0)
    assert bone(long_arms, "left_shoulder", "left_wrist") > 1.04 * bone(mean_joints, "left_shoulder", "left_wrist")
    _, wide_shoulders = shaped(5, 1.0)
    shoulder_span = bone(mean_joints, "left_shoulder", "right_shoulder")
    assert bone(wide_shoulders, "left_shoulder", "right_shoulder") > 1.05 * shoulder_span
    belly, _ = shaped(7, 1.0)
    waist = np.abs(vertices[:, 1] + 0.05) < 0.03
    assert belly[waist, 2].max() - vertices[waist, 2].max() > 0.015

    random_betas = np.random.default_rng(0).normal(size=(200, 10))
    heights = [np.ptp((vertices + shapedirs @ betas)[:, 1]) for betas in random_betas]
    assert 1.4 < min(heights) and max(heights) < 2.1


# --- loading files ----------------------------------------------------------------------------------


def test_npz_loads_as_read_only_float64_arrays(body_path, body_arrays):
    loaded = load_body_model_file(body_path)
    assert loaded.model_name == MODEL_NAME
    for key in ("v_template", "J_regressor", "weights", "shapedirs", "posedirs"):
        array = getattr(loaded, key)
        assert array.dtype == np.float64 and not array.flags.writeable
        np.testing.assert_array_equal(array, body_arrays[key])
    np.testing.assert_array_equal(loaded.f, body_arrays["f"])
    np.testing.assert_array_equal(loaded.parents, PARENTS)


@contextlib.contextmanager
def _modules_while_pickling(**classes_by_module):
    """Puts fake modules holding the given classes into sys.modules, then takes every one out."""
    added = []
    saved = {}
    for module_name, classes in classes_by_module.items():
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        saved[module_name] = sys.modules[module_name]
        module = types.ModuleType(module_name)
        for cls in classes:
            cls.__module__ = module_name
            setattr(module, cls.__qualname__, cls)
        sys.modules[module_name] = module
    try:
        yield
    finally:
        for module_name, module in saved.items():
            sys.modules[module_name] = module
        for name in added:
            del sys.modules[name]


def _fake_class(name, **state):
    """A class that pickles (protocol 2) as NEWOBJ + BUILD(state dict), like chumpy's and scipy's."""
    cls = type(name, (), {"__init__": lambda self, **values: self.__dict__.update(values)})
    cls.__qualname__ = name
    return cls


def _compressed_columns(dense):
    """(data, indices, indptr) of a dense matrix in compressed-sparse-column layout."""
    data, indices, indptr = [], [], [0]
    for column in dense.T:
        rows = np.flatnonzero(column)
        indices.extend(rows)
        data.extend(column[rows])
        indptr.append(len(indices))
    return np.array(data), np.array(indices, dtype=np.int32), np.array(indptr, dtype=np.int32)


def _write_chumpy_era_pickle(path, arrays):
    """An SMPL-style .pkl: chumpy Ch / Select objects, a scipy csc J_regressor, SMPL's uint32 root.

    Made the way the official files were: the objects' classes live in modules named chumpy.ch,
    chumpy.reordering and scipy.sparse.csc, which exist only while pickling.
    """
    ch_class = _fake_class("Ch")
    select_class = _fake_class("Select")
    csc_class = _fake_class("csc_matrix")
    vertex_count = arrays["v_template"].shape[0]
    # Official files carry more shape components than the 10 used; the loader keeps the first 10.
    extra_components = np.random.default_rng(0).normal(size=(vertex_count, 3, 2))
    data, indices, indptr = _compressed_columns(arrays["J_regressor"])
    kintree_table = arrays["kintree_table"].astype(np.uint32)
    kintree_table[0, 0] = 4294967295
    chumpy_state = {"_dirty_vars": set(), "_itr": None, "_make_dense": False, "_make_sparse": False}
    content = {
        "v_template": select_class(
            a=ch_class(x=arrays["v_template"].ravel(), **chumpy_state),
            idxs=np.arange(vertex_count * 3),
            preferred_shape=(vertex_count, 3),
            **chumpy_state,
        ),
        "shapedirs": ch_class(x=np.concatenate([arrays["shapedirs"], extra_components], axis=2), **chumpy_state),
        "weights": ch_class(x=arrays["weights"], **chumpy_state),
        "posedirs": arrays["posedirs"],
        "J_regressor": csc_class(
            _shape=arrays["J_regressor"].shape, data=data, indices=indices, indptr=indptr, format="csc", maxprint=50
        ),
        "f": arrays["f"].astype(np.uint32),
        "kintree_table": kintree_table,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    fake_modules = {"chumpy.ch": [ch_class], "chumpy.reordering": [select_class], "scipy.sparse.csc": [csc_class]}
    with _modules_while_pickling(**fake_modules):
        path.write_bytes(pickle.dumps(content, protocol=2))
    return path


def test_chumpy_era_pickle_loads_without_chumpy(tmp_path, body_arrays, body_path):
    path = _write_chumpy_era_pickle(tmp_path / "SMPL_NEUTRAL.pkl", body_arrays)
    assert "chumpy" not in sys.modules
    loaded = load_body_model_file(path)
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    assert loaded.model_name == "SMPL_NEUTRAL"
    for key in ("v_template", "J_regressor", "weights", "shapedirs", "posedirs", "f"):
        np.testing.assert_array_equal(getattr(loaded, key), body_arrays[key], err_msg=key)
    np.testing.assert_array_equal(loaded.parents, PARENTS)

    rng = np.random.default_rng(3)
    betas, axis_angles, transl = _random_inputs(rng, 2)
    from_pickle = BodyModel(loaded).forward(betas, axis_angle_to_matrix(axis_angles), transl)
    from_npz = BodyModel.from_file(body_path).forward(betas, axis_angle_to_matrix(axis_angles), transl)
    for pickled, expected in zip(from_pickle, from_npz):
        np.testing.assert_allclose(pickled, expected, atol=1e-12)


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_other_classes_is_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "hostile.pkl"
    path.write_bytes(pickle.dumps({"v_template": _RunsACommand(marker)}, protocol=2))
    with pytest.raises(BodyModelError, match="refusing to load"):
        load_body_model_file(path)
    assert not marker.exists()


def _write_npz(path, arrays, **changes):
    arrays = dict(arrays, **changes)
    return write_npz_atomically(path, {key: value for key, value in arrays.items() if value is not None})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"J_regressor": None}, "lacks J_regressor"),
        ({"J_regressor": np.zeros((23, 5))}, r"'J_regressor' .* expected \(24, "),
        ({"shapedirs": np.zeros((10, 3, 8))}, "8 shape components; at least 10"),
        ({"weights": np.ones((4, 24))}, r"'weights' .* shape \(4, 24\)"),
        ({"f": np.array([[0, 1, 99999]])}, "index vertices outside"),
        ({"kintree_table": np.array([[-1] + [0] * 23, list(range(24))])}, "not SMPL's 24-joint tree"),
    ],
)
def test_bad_npz_contents_raise_body_model_error_naming_the_file(tmp_path, body_arrays, changes, message):
    path = _write_npz(tmp_path / "bad.npz", body_arrays, **changes)
    with pytest.raises(BodyModelError) as error:
        load_body_model_file(path)
    assert str(path) in str(error.value)
    assert error.match(message)


def test_nan_in_a_file_is_refused(tmp_path, body_arrays):
    v_template = body_arrays["v_template"].copy()
    v_template[5, 1] = np.nan
    with pytest.raises(BodyModelError, match="NaN"):
        load_body_model_file(_write_npz(tmp_path / "nan.npz", body_arrays, v_template=v_template))


def test_missing_unknown_and_corrupt_files_raise_body_model_error(tmp_path, body_path):
    with pytest.raises(BodyModelError, match="does not exist"):
        load_body_model_file(tmp_path / "nowhere.npz")
    obj = tmp_path / "body.obj"
    obj.write_text("v 0 0 0\n")
    with pytest.raises(BodyModelError, match=r"expected \.npz or \.pkl"):
        load_body_model_file(obj)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(body_path.read_bytes()[:5000])
    with pytest.raises(BodyModelError, match="truncated.npz"):
        load_body_model_file(truncated)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(BodyModelError, match="garbage.pkl"):
        load_body_model_file(garbage)
    not_a_dict = tmp_path / "list.pkl"
    not_a_dict.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(BodyModelError, match="not a dict"):
        load_body_model_file(not_a_dict)
    object_array = tmp_path / "objects.npz"
    np.savez(object_array, v_template=np.array([None, 1], dtype=object))
    with pytest.raises(BodyModelError, match="no pickled objects"):
        load_body_model_file(object_array)


# --- numpy LBS ---------------------------------------------------------------------------------------


def test_rest_pose_gives_the_template_and_translation_moves_everything(body_path, body_arrays):
    model = BodyModel.from_file(body_path)
    assert model.num_vertices == body_arrays["v_template"].shape[0]
    np.testing.assert_array_equal(model.faces, body_arrays["f"])
    np.testing.assert_array_equal(model.parents, PARENTS)
    identity = np.broadcast_to(np.eye(3), (1, NUM_JOINTS, 3, 3))
    vertices, joints = model.forward(np.zeros((1, 10)), identity)
    np.testing.assert_allclose(vertices[0], body_arrays["v_template"], atol=1e-12)
    np.testing.assert_allclose(joints[0], body_arrays["J_regressor"] @ body_arrays["v_template"], atol=1e-12)
    moved_vertices, moved_joints = model.forward(np.zeros((1, 10)), identity, np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(moved_vertices - vertices, np.broadcast_to([1.0, 2.0, 3.0], vertices.shape), atol=1e-12)
    np.testing.assert_allclose(moved_joints - joints, np.broadcast_to([1.0, 2.0, 3.0], joints.shape), atol=1e-12)


def test_a_bent_elbow_moves_the_forearm_around_the_elbow_only(body_path):
    model = BodyModel.from_file(body_path)
    rotations = np.tile(np.eye(3), (1, NUM_JOINTS, 1, 1))
    rotations[0, JOINT_INDEX["left_elbow"]] = axis_angle_to_matrix([0.0, -np.pi / 2, 0.0])
    _, rest = model.forward(np.zeros((1, 10)), np.tile(np.eye(3), (1, NUM_JOINTS, 1, 1)))
    _, bent = model.forward(np.zeros((1, 10)), rotations)
    moved = np.linalg.norm(bent[0] - rest[0], axis=1) > 1e-9
    assert {JOINT_NAMES[j] for j in np.flatnonzero(moved)} == {"left_wrist", "left_hand"}
    forearm = rest[0, JOINT_INDEX["left_wrist"]] - rest[0, JOINT_INDEX["left_elbow"]]
    expected = axis_angle_to_matrix([0.0, -np.pi / 2, 0.0]) @ forearm
    bent_forearm = bent[0, JOINT_INDEX["left_wrist"]] - bent[0, JOINT_INDEX["left_elbow"]]
    np.testing.assert_allclose(bent_forearm, expected, atol=1e-12)


def test_forward_rejects_wrong_shapes(body_path):
    model = BodyModel.from_file(body_path)
    rotations = np.tile(np.eye(3), (2, NUM_JOINTS, 1, 1))
    with pytest.raises(InputError, match="rotmats"):
        model.forward(np.zeros((2, 10)), rotations[:, :23])
    with pytest.raises(InputError, match="betas"):
        model.forward(np.zeros((1, 10)), rotations)
    with pytest.raises(InputError, match="transl"):
        model.forward(np.zeros((2, 10)), rotations, np.zeros((2, 2)))


def _smplx_output(layer, betas, axis_angles, transl, dtype):
    import torch

    def tensor(array):
        return torch.tensor(array, dtype=dtype)

    with torch.no_grad():
        output = layer(
            betas=tensor(betas),
            global_orient=tensor(axis_angles[:, 0]),
            body_pose=tensor(axis_angles[:, 1:].reshape(len(betas), -1)),
            transl=tensor(transl),
        )
    return output.vertices.numpy(), output.joints.numpy()


def test_numpy_lbs_matches_smplx_on_the_synthetic_body(body_path):
    import torch

    model = BodyModel.from_file(body_path)
    layer = load_smplx_layer(body_path)
    rng = np.random.default_rng(7)
    for batch in (1, 3):
        betas, axis_angles, transl = _random_inputs(rng, batch)
        vertices, joints = model.forward(betas, axis_angle_to_matrix(axis_angles), transl)
        smplx_vertices, smplx_joints = _smplx_output(layer, betas, axis_angles, transl, torch.float32)
        assert smplx_joints.shape == (batch, NUM_JOINTS, 3)
        np.testing.assert_allclose(vertices, smplx_vertices, atol=1e-5)
        np.testing.assert_allclose(joints, smplx_joints, atol=1e-5)

    # The same rotations given as matrices (pose2rot=False), as the encoder's 6D output arrives.
    rotations = axis_angle_to_matrix(axis_angles)
    with torch.no_grad():
        output = layer(
            betas=torch.tensor(betas, dtype=torch.float32),
            global_orient=torch.tensor(rotations[:, :1], dtype=torch.float32),
            body_pose=torch.tensor(rotations[:, 1:], dtype=torch.float32),
            transl=torch.tensor(transl, dtype=torch.float32),
            pose2rot=False,
        )
    np.testing.assert_allclose(vertices, output.vertices.numpy(), atol=1e-5)


def test_numpy_lbs_matches_smplx_exactly_with_pose_correctives(tmp_path, body_arrays):
    import torch

    # The synthetic body has no pose correctives; give it some so the pose-blend path is compared too.
    posedirs = np.random.default_rng(8).normal(scale=0.005, size=body_arrays["posedirs"].shape)
    path = _write_npz(tmp_path / "with_posedirs.npz", body_arrays, posedirs=posedirs)
    model = BodyModel.from_file(path)
    layer = load_smplx_layer(path, dtype="float64")
    betas, axis_angles, transl = _random_inputs(np.random.default_rng(9), 3)
    vertices, joints = model.forward(betas, axis_angle_to_matrix(axis_angles), transl)
    smplx_vertices, smplx_joints = _smplx_output(layer, betas, axis_angles, transl, torch.float64)
    # smplx's Rodrigues adds 1e-8 to the angle; everything else is the same arithmetic.
    np.testing.assert_allclose(vertices, smplx_vertices, atol=1e-7)
    np.testing.assert_allclose(joints, smplx_joints, atol=1e-7)
    with pytest.raises(InputError, match="dtype"):
        load_smplx_layer(path, dtype="float16")


def test_run_time_body_and_metrics_import_neither_torch_nor_smplx():
    code = (
        "import sys, fasthmr_model.body, fasthmr_model.metrics; "
        "sys.exit(sorted({'torch', 'smplx', 'scipy', 'chumpy'} & set(sys.modules)) != [])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_joints_only_forward_matches_the_full_one(body_path):
    body = BodyModel.from_file(body_path)
    rng = np.random.default_rng(7)
    rotmats = axis_angle_to_matrix(rng.normal(0, 0.4, (2, 24, 3)))
    betas, transl = rng.normal(size=(2, 10)), rng.normal(size=(2, 3))
    vertices, joints = body.forward(betas, rotmats, transl)
    none, joints_only = body.forward(betas, rotmats, transl, with_vertices=False)
    assert none is None and vertices.shape == (2, body.num_vertices, 3)
    np.testing.assert_array_equal(joints_only, joints)


def test_kinematic_tree_matches_a_joint_by_joint_walk():
    """Pointer jumping and the path matrix give what a walk down the tree gives, on SMPL's tree and on a
    deeper chain with branches (depth 11: four jumps)."""
    rng = np.random.default_rng(0)
    for parents in (PARENTS, (-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 2, 12, 0)):
        count = len(parents)
        local = axis_angle_to_matrix(rng.normal(0.0, 0.8, (3, count, 3)))
        rest = rng.normal(0.0, 0.3, (3, count, 3))
        world = np.empty_like(local)
        positions = np.zeros_like(rest)
        for node, parent in enumerate(parents):
            world[:, node] = local[:, node] if parent < 0 else world[:, parent] @ local[:, node]
            if parent >= 0:
                positions[:, node] = positions[:, parent] + np.einsum("bij,bj->bi", world[:, parent],
                                                                      rest[:, node] - rest[:, parent])
        tree = KinematicTree(parents)
        np.testing.assert_allclose(tree.world_rotations(local), world, atol=1e-12)
        np.testing.assert_allclose(tree.root_offsets(world, rest), positions, atol=1e-12)
    with pytest.raises(ValueError, match="parents"):
        KinematicTree((-1, 2, 0))
