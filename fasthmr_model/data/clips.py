"""Short synthetic video clips: one to a few people moving in front of a still robot camera.

A clip is a sampled robot scene (camera, boxes, look and lighting of its first frame, sample_scene) whose
people each play a generated motion (fasthmr_model.data.motion) from the spot and heading the scene gave
them, rendered frame by frame with fresh sensor noise. By default people keep to motions done on the spot (no walks,
which would carry them into each other or out of view). Deterministic in the seed. The demo bag and the
replay tests are made of these.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fasthmr_model.body.lbs import BodyModel, move_body
from fasthmr_model.data.camera import PlacementConfig
from fasthmr_model.data.motion import generate_sequence
from fasthmr_model.data.render import PosedBody, ScenePerson, render_scene, sample_scene

ON_THE_SPOT_MOTIONS = ("idle", "turn", "wave", "reach", "squat", "bend")
CLIP_PLACEMENT = PlacementConfig(distance_range=(2.0, 6.0), min_gap=0.6, out_of_frame_probability=0.0)


def render_clip(seed, people: int, frames: int, body_model: BodyModel, width: int = 640, height: int = 480,
                fps: float = 30.0, motion_names: tuple[str, ...] = ON_THE_SPOT_MOTIONS) -> list:
    """`frames` RenderedFrames of `people` people (instance k + 1 = person k in every frame) at `fps`, each
    playing motions drawn from `motion_names` (fasthmr_model.data.motion.MOTION_NAMES; "walk" carries a person
    across the scene: the caller picks a seed that keeps them in view)."""
    motions = [generate_sequence([*np.atleast_1d(seed), 1, person], frames, fps, motion_names, body_model)
               for person in range(people)]
    scene = sample_scene([*np.atleast_1d(seed), 2], body_model,
                         [PosedBody(motion.betas, motion.rotmats[0]) for motion in motions], width, height,
                         placement_config=CLIP_PLACEMENT)
    # Each motion is moved rigidly so that its first frame is the pose the scene placed: the turn the
    # scene gave the body, and the offset that puts its pelvis where the scene stood it.
    tracks = []
    for motion, person in zip(motions, scene.people):
        turn = person.rotmats[0] @ motion.rotmats[0, 0].T
        rest_pelvis = body_model.rest_joints(motion.betas[None])[0, 0]
        offset = rest_pelvis + person.translation - turn @ (rest_pelvis + motion.translation[0])
        orient, translation = move_body(turn, offset, motion.rotmats[:, 0], motion.translation, rest_pelvis)
        tracks.append((orient, translation))
    rendered = []
    for frame in range(frames):
        posed = []
        for motion, person, (orient, translation) in zip(motions, scene.people, tracks):
            rotmats = motion.rotmats[frame].copy()
            rotmats[0] = orient[frame]
            posed.append(ScenePerson(motion.betas, rotmats, translation[frame], person.appearance))
        style = replace(scene.style, noise_seed=scene.style.noise_seed + frame)
        rendered.append(render_scene(replace(scene, people=tuple(posed), style=style), body_model))
    return rendered
