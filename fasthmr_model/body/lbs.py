"""The run-time body model: SMPL's linear blend skinning in numpy (no torch), as smplx computes it.

Per call: shape blend (v_template + shapedirs . betas), joints regressed from the shaped template,
pose blend from (R - I) of joints 1..23, forward kinematics along the parents, skinning with the
rest-relative joint transforms, then the translation. Everything that does not depend on the input
is computed once at load time.
"""

import numpy as np

from fasthmr_model.body.model_file import load_body_model_file
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS, KinematicTree
from fasthmr_model.errors import InputError


class BodyModel:
    """An SMPL-format body (the synthetic body or a real SMPL file) posed by numpy LBS.

    Args:
        arrays: a BodyModelArrays, e.g. from load_body_model_file.
    """

    def __init__(self, arrays):
        self.arrays = arrays
        vertex_count = arrays.num_vertices
        self._v_template = arrays.v_template
        # (10, V*3): betas (B, 10) @ this = per-vertex shape offsets, flattened.
        self._shapedirs = np.ascontiguousarray(arrays.shapedirs.reshape(vertex_count * 3, NUM_BETAS).T)
        # Joint regression is linear, so regress the template and each blend shape once here
        # instead of the shaped vertices on every call.
        self._joint_template = arrays.J_regressor @ arrays.v_template
        self._joint_shapedirs = np.ascontiguousarray(
            np.einsum("jv,vcb->bjc", arrays.J_regressor, arrays.shapedirs).reshape(NUM_BETAS, NUM_JOINTS * 3)
        )
        # (207, V*3), or None when the file has no pose correctives (the synthetic body): adding
        # zeros changes nothing, so the product is skipped.
        posedirs = arrays.posedirs.reshape(vertex_count * 3, -1).T
        self._posedirs = np.ascontiguousarray(posedirs) if np.any(posedirs) else None
        self._weights = arrays.weights
        self._tree = KinematicTree(arrays.parents)

    @classmethod
    def from_file(cls, path):
        """Loads a body model file (.npz or SMPL .pkl); raises BodyModelError if it is unusable."""
        return cls(load_body_model_file(path))

    @property
    def num_vertices(self):
        return self.arrays.num_vertices

    @property
    def faces(self):
        """(F, 3) int64 triangles."""
        return self.arrays.f

    @property
    def parents(self):
        """(24,) int64 parent of each joint, -1 for the root."""
        return self.arrays.parents

    def rest_joints(self, betas):
        """(B, 10) betas -> (B, 24, 3) joint positions of the shaped body in its rest pose (no rotation)."""
        betas = np.asarray(betas, dtype=np.float64)
        return self._joint_template + (betas @ self._joint_shapedirs).reshape(len(betas), NUM_JOINTS, 3)

    def forward(self, betas, rotmats, transl=None, with_vertices=True):
        """Poses the body.

        Args:
            betas: (B, 10) shape coefficients.
            rotmats: (B, 24, 3, 3) joint rotations relative to the parent, global orientation first.
            transl: (B, 3) translation added to vertices and joints, or None for none.
            with_vertices: False skips the mesh (skinning is most of the cost) when only joints are needed.

        Returns:
            vertices (B, V, 3) (None when with_vertices is False) and joints (B, 24, 3), float64, metres.

        Raises InputError on arrays of the wrong shape.
        """
        betas = np.asarray(betas, dtype=np.float64)
        rotmats = np.asarray(rotmats, dtype=np.float64)
        if rotmats.ndim != 4 or rotmats.shape[1:] != (NUM_JOINTS, 3, 3):
            raise InputError(f"rotmats must have shape (B, {NUM_JOINTS}, 3, 3), got {rotmats.shape}.")
        batch = rotmats.shape[0]
        if betas.shape != (batch, NUM_BETAS):
            raise InputError(f"betas must have shape ({batch}, {NUM_BETAS}) to match rotmats, got {betas.shape}.")
        if transl is not None:
            transl = np.asarray(transl, dtype=np.float64)
            if transl.shape != (batch, 3):
                raise InputError(f"transl must have shape ({batch}, 3) to match rotmats, got {transl.shape}.")

        rest_joints = self.rest_joints(betas)

        world_rotations = self._tree.world_rotations(rotmats)
        joints = rest_joints[:, :1] + self._tree.root_offsets(world_rotations, rest_joints)

        translation = np.zeros((1, 1, 3)) if transl is None else transl[:, None, :]
        if not with_vertices:
            return None, joints + translation

        vertex_count = self.num_vertices
        vertices = self._v_template + (betas @ self._shapedirs).reshape(batch, vertex_count, 3)
        if self._posedirs is not None:
            pose_feature = (rotmats[:, 1:] - np.eye(3)).reshape(batch, -1)
            vertices = vertices + (pose_feature @ self._posedirs).reshape(batch, vertex_count, 3)
        # Skinning transforms move rest positions: x -> R_world (x - rest_joint) + posed_joint.
        offsets = joints - np.einsum("bjkl,bjl->bjk", world_rotations, rest_joints)
        transforms = np.concatenate([world_rotations.reshape(batch, NUM_JOINTS, 9), offsets], axis=2)
        blended = (self._weights @ transforms).reshape(batch, vertex_count, 4, 3)
        # blended[..., 0:3, :] are the rows of each vertex's rotation, blended[..., 3, :] its offset.
        vertices = np.einsum("bvkl,bvl->bvk", blended[:, :, :3, :], vertices) + blended[:, :, 3, :]

        return vertices + translation, joints + translation


def move_body(rotation, offset, global_orient, transl, rest_pelvis):
    """SMPL parameters of a body after a rigid motion x -> rotation @ x + offset of its whole frame.

    The body model turns everything about its rest pelvis: x -> R (x - pelvis_rest) + pelvis_rest + transl,
    so the moved body keeps that form with R' = rotation @ R and
    transl' = rotation @ (pelvis_rest + transl) + offset - pelvis_rest.

    Args:
        rotation: (3, 3) or (T, 3, 3); offset: (3,) or (T, 3) (e.g. world -> camera extrinsics per frame).
        global_orient: (T, 3, 3) root rotations; transl: (T, 3); rest_pelvis: (3,) of the body's betas.
    Returns (global_orient' (T, 3, 3), transl' (T, 3)).
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    rest_pelvis = np.asarray(rest_pelvis, dtype=np.float64)
    moved_orient = rotation @ np.asarray(global_orient, dtype=np.float64)
    pelvis = np.asarray(transl, dtype=np.float64) + rest_pelvis
    moved_pelvis = np.einsum("...ij,...j->...i", rotation, pelvis) + offset
    return moved_orient, moved_pelvis - rest_pelvis
