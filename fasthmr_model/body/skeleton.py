"""SMPL's kinematic tree and the sizes of the SMPL format, as plain data, and the tree's depth levels.

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


def depth_levels(parents) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(nodes, their parents) per depth >= 1 of a tree given by parents (root: -1, parents before children):
    every node's parent is in an earlier level, so forward kinematics can compute a whole level in one
    batched operation (9 levels for SMPL's 23 non-root joints; at batch 1 numpy's per-call overhead is the
    cost of a loop over joints)."""
    depth = [0] * len(parents)
    for node in range(1, len(parents)):
        depth[node] = depth[parents[node]] + 1
    return tuple((np.array(nodes, np.intp), np.array([parents[node] for node in nodes], np.intp))
                 for nodes in ([node for node in range(len(parents)) if depth[node] == level]
                               for level in range(1, max(depth) + 1)))
