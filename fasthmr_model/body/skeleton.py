"""SMPL's kinematic tree and the sizes of the SMPL format, as plain data, and forward kinematics along a tree.

Every body model here (the synthetic body or a user's real SMPL file) has these 24 joints in this
order, pelvis first. The body faces +z with y up and its left side at +x (SMPL's rest frame).
"""

import numpy as np

JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)

# PARENTS[j] is the joint whose rotation carries joint j; -1 marks the root. Every parent comes
# before its child, so forward kinematics can walk the joints in index order.
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

NUM_JOINTS = len(JOINT_NAMES)
# Shape coefficients the pipeline uses (SMPL files may carry more; the first ten are kept).
NUM_BETAS = 10
# Pose-corrective inputs: the 9 entries of (R - I) for each of the 23 non-root joints.
NUM_POSE_BASIS = 9 * (NUM_JOINTS - 1)

JOINT_INDEX = {name: index for index, name in enumerate(JOINT_NAMES)}


class KinematicTree:
    """Forward kinematics of a tree (parents: root -1, parents before children) in a few whole-array
    operations, for a batch of bodies: at batch 1 numpy's per-call overhead is the cost, so there is no loop
    over joints, nor over the tree's depth levels.

    - World rotations by pointer jumping: every node's product so far is composed with the product of the
      node as many steps up, so ceil(log2(depth + 1)) batched products do it (4 for SMPL's depth 8, against
      8 levels).
    - Positions: each non-root node's bone (its rest offset from its parent) turned by its parent's world
      rotation, summed along the node's path from the root: one product with the 0/1 path matrix.
    """

    def __init__(self, parents) -> None:
        self.parents = tuple(int(parent) for parent in parents)
        count = len(self.parents)
        if count < 1 or self.parents[0] != -1 or any(not 0 <= parent < node for node, parent in
                                                      enumerate(self.parents[1:], start=1)):
            raise ValueError(f"parents must start with the root (-1) and list every parent before its child, "
                             f"got {self.parents}")
        # Node `count` stands for the identity above the root; a node whose path is complete points at it.
        jump = np.array([parent if parent >= 0 else count for parent in self.parents] + [count], np.intp)
        tables = []
        while np.any(jump[:count] != count):
            tables.append(jump)
            jump = jump[jump]
        self._jumps = tuple(tables)
        self._bone_nodes = np.arange(1, count, dtype=np.intp)
        self._bone_parents = np.array(self.parents[1:], np.intp)
        path = np.zeros((count, count - 1))  # path[i, e - 1] = 1: bone e lies on the path root -> i
        for node in range(1, count):
            ancestor = node
            while ancestor > 0:
                path[node, ancestor - 1] = 1.0
                ancestor = self.parents[ancestor]
        self._path = path

    def world_rotations(self, local: np.ndarray) -> np.ndarray:
        """Local rotations (B, N, 3, 3), the root's first -> world rotations (B, N, 3, 3)."""
        products = np.concatenate([local, np.broadcast_to(np.eye(3), (len(local), 1, 3, 3))], axis=1)
        for jump in self._jumps:
            products = products[:, jump] @ products
        return products[:, :-1]

    def root_offsets(self, world: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """Positions relative to the root (B, N, 3) (the root's row is 0) of rest positions (B, N, 3) posed by
        world rotations (B, M, 3, 3) (M covers every parent: a tree of points may hang from fewer joints)."""
        bones = (rest[:, self._bone_nodes] - rest[:, self._bone_parents])[..., None]
        return self._path @ (world[:, self._bone_parents] @ bones)[..., 0]
