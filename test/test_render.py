"""Tests of the synthetic world's cameras and renderer: exact depth test and instance masks (checked
against an independent ray caster), camera-frame ground truth, determinism, truncation at the border."""

import dataclasses

import numpy as np
import pytest

from fasthmr_model.body import BodyModel, write_synthetic_body
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import JOINT_INDEX, NUM_BETAS, NUM_JOINTS
from fasthmr_model.data import render
from fasthmr_model.data.camera import (
    Camera, CameraConfig, PlacementConfig, camera_pose, crop_camera, intrinsics_from_fov, place_people,
    sample_camera,
)
from fasthmr_model.data.render import (
    JOINT_DEPTH_TOLERANCE, PosedBody, RenderStyle, Scene, SceneBox, ScenePerson, rasterize, render_scene,
    sample_appearance, sample_scene,
)
from fasthmr_model.errors import InputError


@pytest.fixture(scope="module")
def body_model(tmp_path_factory):
    return BodyModel.from_file(write_synthetic_body(tmp_path_factory.mktemp("body") / "synthetic_body.npz"))


def random_bodies(seed, count):
    """Random but limited poses: joint rotations of ~0.2 rad, betas within +-1.5, upright root."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        axis_angle = np.concatenate([np.zeros((1, 3)), rng.normal(0.0, 0.2, (NUM_JOINTS - 1, 3))])
        betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -1.5, 1.5)
        bodies.append(PosedBody(betas, axis_angle_to_matrix(axis_angle)))
    return bodies


def arms_down_pose(heading):
    """(24, 3, 3) a standing pose with the arms lowered, turned by `heading` about the vertical."""
    axis_angle = np.zeros((NUM_JOINTS, 3))
    axis_angle[0] = (0.0, heading, 0.0)
    # The body's left is +x: lowering the left arm turns it about +z by minus ~70 degrees.
    axis_angle[JOINT_INDEX["left_shoulder"]] = (0.0, 0.0, -1.2)
    axis_angle[JOINT_INDEX["right_shoulder"]] = (0.0, 0.0, 1.2)
    axis_angle[JOINT_INDEX["left_elbow"]] = (0.0, -0.4, 0.0)
    return axis_angle_to_matrix(axis_angle)


def standing_person(body_model, floor_x, floor_z, heading, seed):
    """A ScenePerson with the arms down, pelvis over (floor_x, floor_z), feet on the floor."""
    rotmats = arms_down_pose(heading)
    betas = np.zeros(NUM_BETAS)
    vertices, joints = body_model.forward(betas[None], rotmats[None])
    translation = np.array([floor_x - joints[0, 0, 0], -vertices[0, :, 1].min(), floor_z - joints[0, 0, 2]])
    return ScenePerson(betas, rotmats, translation, sample_appearance(seed))


def level_camera(width, height, camera_height=1.0, fov=60.0):
    """A level camera over the origin looking along world +z."""
    rotation, translation = camera_pose((0.0, camera_height, 0.0), 0.0, 0.0, 0.0)
    return Camera(intrinsics_from_fov(fov, width, height), width, height, rotation, translation)


def ray_cast(vertices, faces, intrinsics, width, height):
    """Reference renderer: for every pixel centre, the nearest intersection of its ray with any triangle
    (Moller-Trumbore, both sides, no culling). Returns (H*W,) face index (-1 for none) and depth.

    Independent of the rasteriser: it works in 3D, per ray; each triangle is tried on the pixels of a
    conservative screen box around it (one pixel of margin) only to keep it fast.
    """
    directions = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1).reshape(-1, 2)
    directions = np.concatenate([directions, np.ones((len(directions), 1))], axis=1) @ np.linalg.inv(intrinsics).T
    nearest = np.full(width * height, np.inf)
    owner = np.full(width * height, -1)
    corners = vertices[faces]
    projected = corners @ intrinsics.T
    screen = projected[:, :, :2] / projected[:, :, 2:]
    for face, (triangle, points) in enumerate(zip(corners, screen)):
        low = np.clip(np.floor(points.min(axis=0)) - 1, 0, [width - 1, height - 1]).astype(int)
        high = np.clip(np.ceil(points.max(axis=0)) + 1, 0, [width - 1, height - 1]).astype(int)
        columns, rows = np.meshgrid(np.arange(low[0], high[0] + 1), np.arange(low[1], high[1] + 1))
        pixels = (rows * width + columns).reshape(-1)
        ray = directions[pixels]
        edge_1, edge_2 = triangle[1] - triangle[0], triangle[2] - triangle[0]
        p = np.cross(ray, edge_2)
        determinant = p @ edge_1
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / determinant
            s = -triangle[0]
            first = (p @ s) * inverse
            q = np.cross(s, edge_1)
            second = (ray @ q) * inverse
            distance = (q @ edge_2) * inverse  # ray parameter; rays have z = 1, so this is the depth
        hit = (np.abs(determinant) > 1e-15) & (first >= 0) & (second >= 0) & (first + second <= 1) & (distance > 0)
        closer = hit & (distance < nearest[pixels])
        nearest[pixels[closer]] = distance[closer]
        owner[pixels[closer]] = face
    return owner, nearest


# ------------------------------------------------------------------------------------------ rasteriser


def two_triangles():
    """A small near triangle (z = 2) in front of a large far one (z = 4), overlapping on screen."""
    near = np.array([[-0.2, -0.2, 2.0], [0.3, -0.1, 2.0], [0.0, 0.3, 2.0]])
    far = np.array([[-1.5, -1.0, 4.0], [1.5, -1.0, 4.0], [0.0, 1.5, 4.0]])
    return np.concatenate([near, far]), np.array([[0, 1, 2], [3, 4, 5]])


def face_map(fragments, size):
    faces = np.full(size, -1)
    faces[fragments.pixel] = fragments.face
    return faces


def test_nearer_triangle_hides_farther_one_in_either_drawing_order():
    vertices, faces = two_triangles()
    intrinsics = intrinsics_from_fov(60.0, 64, 48)
    forward = face_map(rasterize(vertices, faces, intrinsics, 64, 48, cull_back_faces=False), 64 * 48)
    backward = face_map(rasterize(vertices, faces[::-1], intrinsics, 64, 48, cull_back_faces=False), 64 * 48)
    # Face 0 of the reversed list is the far triangle: map back to the first order's indices.
    backward = np.where(backward >= 0, 1 - backward, -1)
    np.testing.assert_array_equal(forward, backward)

    near_alone = face_map(rasterize(vertices, faces[:1], intrinsics, 64, 48, cull_back_faces=False), 64 * 48)
    far_alone = face_map(rasterize(vertices, faces[1:], intrinsics, 64, 48, cull_back_faces=False), 64 * 48)
    assert np.count_nonzero(near_alone == 0) > 20
    np.testing.assert_array_equal(forward == 0, near_alone == 0)  # the near one shows wherever it covers
    np.testing.assert_array_equal(forward == 1, (far_alone == 0) & (near_alone != 0))


def test_interpenetrating_triangles_meet_where_their_depths_cross():
    # A tilted triangle pierces a frontal one: each pixel must show the one nearer along its ray.
    vertices = np.array([
        [-1.0, -0.8, 3.0], [1.0, -0.8, 3.0], [0.0, 0.9, 3.0],
        [-1.0, 0.0, 2.0], [1.0, -0.5, 4.0], [1.0, 0.5, 4.0],
    ])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    intrinsics = intrinsics_from_fov(70.0, 96, 72)
    fragments = rasterize(vertices, faces, intrinsics, 96, 72, cull_back_faces=False)
    owner, depth = ray_cast(vertices, faces, intrinsics, 96, 72)
    np.testing.assert_array_equal(face_map(fragments, 96 * 72), owner)
    np.testing.assert_allclose(fragments.depth, depth[fragments.pixel], rtol=1e-9)
    assert set(np.unique(owner)) == {-1, 0, 1}


def test_barycentrics_are_perspective_correct():
    vertices = np.array([[-1.0, -0.6, 1.5], [1.2, -0.4, 6.0], [0.1, 0.9, 3.0]])
    intrinsics = intrinsics_from_fov(80.0, 80, 60)
    fragments = rasterize(vertices, np.array([[0, 1, 2]]), intrinsics, 80, 60, cull_back_faces=False)
    points = fragments.barycentric @ vertices  # the surface point seen at each pixel
    projected = points @ intrinsics.T
    pixels = np.stack([fragments.pixel % 80, fragments.pixel // 80], axis=1)
    np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], pixels, atol=1e-9)
    np.testing.assert_allclose(points[:, 2], fragments.depth, rtol=1e-12)
    np.testing.assert_allclose(fragments.barycentric.sum(axis=1), 1.0)


def test_back_faces_are_culled_and_near_faces_skipped():
    vertices, faces = two_triangles()
    intrinsics = intrinsics_from_fov(60.0, 64, 48)
    front = rasterize(vertices, faces, intrinsics, 64, 48)
    back = rasterize(vertices, faces[:, ::-1], intrinsics, 64, 48)
    # The same triangles wound the other way round face away from the camera.
    assert (len(front.pixel) == 0) != (len(back.pixel) == 0)
    behind = vertices * np.array([1.0, 1.0, -1.0])
    assert len(rasterize(behind, faces, intrinsics, 64, 48, cull_back_faces=False).pixel) == 0


# ---------------------------------------------------------------------------------------------- scenes


def occlusion_scene(body_model, width=160, height=120):
    """Person 1 at 3 m, person 2 at 4.5 m half behind person 1, a crate in front of person 2's legs."""
    camera = level_camera(width, height)
    people = (
        standing_person(body_model, 0.25, 3.0, 0.3, seed=1),
        standing_person(body_model, 0.0, 4.5, -0.5, seed=2),
    )
    crate = SceneBox(np.array([-0.25, 0.3, 3.7]), np.array([0.3, 0.3, 0.3]), 0.2, (0.5, 0.4, 0.3), (0.5, 0.4, 0.3), 0.1)
    return Scene(camera, people, (crate,), RenderStyle(background="texture", clutter_shapes=3))


def scene_meshes(scene, body_model):
    """Camera-frame vertices and faces of everything in a scene, and each face's instance id (0 = box)."""
    vertices, faces, owners = [], [], []
    offset = 0
    for index, person in enumerate(scene.people):
        posed, _ = body_model.forward(person.betas[None], person.rotmats[None], person.translation[None])
        vertices.append(scene.camera.world_to_camera(posed[0]))
        faces.append(body_model.faces + offset)
        owners.append(np.full(len(body_model.faces), index + 1))
        offset += len(posed[0])
    for box in scene.boxes:
        # The box's 8 corners and its 6 sides as 2 triangles each (any winding: the ray caster has none).
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
        turn = axis_angle_to_matrix(np.array([0.0, box.yaw, 0.0]))
        vertices.append(scene.camera.world_to_camera((signs * box.half_size) @ turn.T + box.centre))
        for axis in range(3):
            for side in (-1, 1):
                # The side's corners in cyclic order around it.
                cycle = [np.flatnonzero((signs[:, axis] == side) & (signs[:, (axis + 1) % 3] == a)
                                        & (signs[:, (axis + 2) % 3] == b))[0]
                         for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
                faces.append(np.array([cycle[:3], [cycle[0], cycle[2], cycle[3]]]) + offset)
                owners.append(np.zeros(2, dtype=int))
        offset += len(signs)
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(owners)


def test_instance_mask_is_the_nearest_surface_with_occlusion(body_model):
    scene = occlusion_scene(body_model)
    frame = render_scene(scene, body_model)
    camera = scene.camera
    vertices, faces, owners = scene_meshes(scene, body_model)
    owner_face, depth = ray_cast(vertices, faces, camera.intrinsics, camera.width, camera.height)
    expected = np.where(owner_face >= 0, owners[owner_face], 0).reshape(camera.height, camera.width)

    np.testing.assert_array_equal(frame.instance_mask, expected)
    covered = np.isfinite(depth)
    np.testing.assert_array_equal(np.isfinite(frame.depth).reshape(-1), covered)
    np.testing.assert_allclose(frame.depth.reshape(-1)[covered], depth[covered], rtol=1e-6)

    # The scene really exercises occlusion: person 2 alone covers pixels that person 1 or the crate hide.
    alone = render_scene(dataclasses.replace(scene, people=scene.people[1:], boxes=()), body_model)
    hidden = (alone.instance_mask == 1) & (frame.instance_mask != 2)
    assert np.count_nonzero(hidden & (frame.instance_mask == 1)) > 50
    assert np.count_nonzero(hidden & (frame.instance_mask == 0)) > 20
    assert [person.visible_pixels for person in frame.people] == [
        np.count_nonzero(frame.instance_mask == 1), np.count_nonzero(frame.instance_mask == 2)]


def test_joints_hidden_behind_a_box_are_not_visible(body_model):
    frame = render_scene(occlusion_scene(body_model), body_model)
    back_person = frame.people[1]
    # The crate hides person 2's feet; the head stays in view.
    assert back_person.joint_visible[JOINT_INDEX["head"]]
    for ankle in (JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]):
        column, row = np.round(back_person.joints_2d[ankle]).astype(int)
        assert frame.instance_mask[row, column] == 0 and np.isfinite(frame.depth[row, column])
        assert not back_person.joint_visible[ankle]
    for person in frame.people:
        columns, rows = np.round(person.joints_2d).astype(int).T
        in_image = (columns >= 0) & (columns < 160) & (rows >= 0) & (rows < 120)
        surface = np.full(NUM_JOINTS, np.inf)
        surface[in_image] = frame.depth[rows[in_image], columns[in_image]]
        unoccluded = surface >= person.joints_3d[:, 2] - JOINT_DEPTH_TOLERANCE
        np.testing.assert_array_equal(person.joint_visible, in_image & unoccluded)


def test_ground_truth_is_consistent_in_the_camera_frame(body_model):
    scene = sample_scene(7, body_model, random_bodies(7, 3), 320, 240)
    frame = render_scene(scene, body_model)
    camera = scene.camera
    for person, truth in zip(scene.people, frame.people):
        # The body model with the camera-frame pose and translation gives the camera-frame body.
        vertices, joints = body_model.forward(truth.betas[None], truth.rotmats[None], truth.translation[None])
        world_vertices, world_joints = body_model.forward(
            person.betas[None], person.rotmats[None], person.translation[None])
        np.testing.assert_allclose(joints[0], truth.joints_3d, atol=1e-9)
        np.testing.assert_allclose(joints[0], camera.world_to_camera(world_joints[0]), atol=1e-9)
        np.testing.assert_allclose(vertices[0], camera.world_to_camera(world_vertices[0]), atol=1e-9)
        # Only the global orientation changes between the frames.
        np.testing.assert_allclose(truth.rotmats[1:], person.rotmats[1:])
        np.testing.assert_allclose(axis_angle_to_matrix(truth.axis_angle), truth.rotmats, atol=1e-9)
        # 2D joints are the projections of the 3D joints with K.
        homogeneous = truth.joints_3d @ camera.intrinsics.T
        np.testing.assert_allclose(truth.joints_2d, homogeneous[:, :2] / homogeneous[:, 2:], atol=1e-9)
        assert truth.visible_pixels == np.count_nonzero(frame.instance_mask == truth.instance_id)


def test_same_seed_gives_identical_images_and_labels(body_model):
    def render_seed(seed):
        return render_scene(sample_scene(seed, body_model, random_bodies(seed, 2), 200, 150), body_model)

    first, second, other = render_seed(11), render_seed(11), render_seed(12)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.instance_mask.tobytes() == second.instance_mask.tobytes()
    assert first.depth.tobytes() == second.depth.tobytes()
    for a, b in zip(first.people, second.people):
        for field in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))
    assert first.image.tobytes() != other.image.tobytes()
    assert first.image.dtype == np.uint8 and first.image.shape == (150, 200, 3)
    assert first.instance_mask.dtype == np.uint8 and first.instance_mask.shape == (150, 200)


def test_every_background_and_shading_renders(body_model):
    scene = occlusion_scene(body_model, 96, 72)
    for background in ("gradient", "texture", "room"):
        for smooth in (True, False):
            style = RenderStyle(background=background, clutter_shapes=4, smooth_shading=smooth, blur_sigma=0.8,
                                noise_sigma=3.0, noise_seed=5)
            frame = render_scene(dataclasses.replace(scene, style=style), body_model)
            assert frame.image.std() > 5.0
            np.testing.assert_array_equal(frame.instance_mask, render_scene(scene, body_model).instance_mask)
    with pytest.raises(InputError, match="background"):
        render_scene(dataclasses.replace(scene, style=RenderStyle(background="sky")), body_model)


def test_scene_without_people_is_all_background(body_model):
    scene = sample_scene(5, body_model, [], 120, 90)
    frame = render_scene(dataclasses.replace(scene, boxes=()), body_model)
    assert frame.people == () and not frame.instance_mask.any() and np.isinf(frame.depth).all()
    assert frame.image.shape == (90, 120, 3)


def test_person_cut_by_the_image_border(body_model):
    # The wide camera sees the same view with 160 more columns on the right, where the person stands.
    narrow = level_camera(160, 120)
    wide = Camera(narrow.intrinsics, 320, 120, narrow.rotation, narrow.translation)
    person = standing_person(body_model, -1.75, 3.0, 0.0, seed=3)  # world -x is image right
    style = RenderStyle()
    cut = render_scene(Scene(narrow, (person,), (), style), body_model)
    whole = render_scene(Scene(wide, (person,), (), style), body_model)

    np.testing.assert_array_equal(cut.instance_mask, whole.instance_mask[:, :160])
    assert 0 < cut.people[0].visible_pixels < whole.people[0].visible_pixels
    outside = cut.people[0].joints_2d[:, 0] >= 159.5
    assert 0 < np.count_nonzero(outside) < NUM_JOINTS
    assert not np.any(cut.people[0].joint_visible[outside])
    assert np.any(cut.people[0].joint_visible[~outside])
    np.testing.assert_array_equal(cut.people[0].joint_visible[~outside], whole.people[0].joint_visible[~outside])


def test_crop_camera_renders_the_crop(body_model):
    scene = sample_scene(3, body_model, random_bodies(3, 1), 320, 240)
    crop_box = render.person_crop_box(scene, body_model, 0)
    camera = crop_camera(scene.camera, crop_box, 64)
    frame = render_scene(dataclasses.replace(scene, camera=camera), body_model)
    full = render_scene(scene, body_model)
    # Crop pixel i has its centre at original coordinate centre - side / 2 + (i + 0.5) side / size.
    centre_x, centre_y, side = crop_box
    step = side / 64
    expected = (full.people[0].joints_2d - [centre_x - side / 2, centre_y - side / 2]) / step - 0.5
    np.testing.assert_allclose(frame.people[0].joints_2d, expected, atol=1e-9)
    # The whole mesh fits the crop (tight box expanded to 3:4), touching its top and bottom.
    rows = np.flatnonzero(np.any(frame.instance_mask == 1, axis=1))
    assert frame.people[0].visible_pixels > 500 and rows[0] <= 2 and rows[-1] >= 61


# --------------------------------------------------------------------------------------------- cameras


def test_sampled_cameras_are_robot_like():
    config = CameraConfig()
    for seed in range(50):
        camera = sample_camera(seed, 640, 480, config)
        assert config.height_range[0] <= camera.position[1] <= config.height_range[1]
        forward = camera.rotation[2]  # optical axis in the world
        assert abs(np.degrees(np.arcsin(forward[1]))) <= config.pitch_limit_deg + 1e-9
        fov = np.degrees(2.0 * np.arctan(320.0 / camera.intrinsics[0, 0]))
        assert config.horizontal_fov_range_deg[0] <= fov <= config.horizontal_fov_range_deg[1]
        np.testing.assert_allclose(camera.rotation @ camera.rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(camera.rotation) > 0
    first, second = sample_camera(4, 640, 480), sample_camera(4, 640, 480)
    np.testing.assert_array_equal(first.rotation, second.rotation)


def test_camera_axes_follow_the_optical_frame():
    rotation, translation = camera_pose((0.0, 1.5, 0.0), 0.0, np.radians(10.0), 0.0)
    camera = Camera(intrinsics_from_fov(60.0, 640, 480), 640, 480, rotation, translation)
    ahead_level = camera.world_to_camera([0.0, 1.5, 10.0])  # at camera height, 10 m ahead
    assert ahead_level[2] > 0
    # Pitched down by 10 degrees: a level point ahead appears above the image centre (v < cy).
    assert camera.project(ahead_level)[1] < 239.5
    # World up is image up (y down), world -x is image right for a camera looking along +z.
    up = camera.project(camera.world_to_camera([0.0, 2.5, 10.0]))
    right = camera.project(camera.world_to_camera([-1.0, 1.5, 10.0]))
    left = camera.project(camera.world_to_camera([0.0, 1.5, 10.0]))
    assert up[1] < left[1] and right[0] > left[0]


def test_people_are_placed_apart_and_in_range():
    camera = sample_camera(0, 640, 480)
    config = PlacementConfig()
    radii = np.array([0.3, 0.9, 0.5, 0.4, 0.6])
    positions = place_people(1, camera, radii, config)
    np.testing.assert_array_equal(positions, place_people(1, camera, radii, config))
    offsets = positions - camera.position[[0, 2]]
    distances = np.linalg.norm(offsets, axis=1)
    assert np.all((distances >= config.distance_range[0]) & (distances <= config.distance_range[1]))
    for first in range(len(radii)):
        for second in range(first + 1, len(radii)):
            gap = np.linalg.norm(positions[first] - positions[second]) - radii[first] - radii[second]
            assert gap >= config.min_gap
    with pytest.raises(InputError, match="could not place"):
        place_people(0, camera, np.full(60, 1.0), dataclasses.replace(config, max_attempts=20))


def test_sampled_people_stand_on_the_floor_without_touching(body_model):
    scene = sample_scene(21, body_model, random_bodies(21, 4), 320, 240)
    posed = [body_model.forward(p.betas[None], p.rotmats[None], p.translation[None])[0][0] for p in scene.people]
    for index, vertices in enumerate(posed):
        assert abs(vertices[:, 1].min()) < 1e-9
        for other in posed[index + 1:]:
            horizontal = np.linalg.norm(vertices[:, None, [0, 2]] - other[None, :, [0, 2]], axis=2)
            assert horizontal.min() >= PlacementConfig().min_gap


def test_benchmark_command_prints_every_rate(capsys):
    render.main(["--bench", "--frames", "1"])
    output = capsys.readouterr().out
    assert "640x480" in output and "256x256" in output and "frames/s" in output
    assert "background painted per frame" in output and "background painted once" in output


def test_a_background_painted_once_renders_the_same_bytes(body_model):
    """A still camera's frames share their background (sequences paint it once): the same frame, bit for bit."""
    scene = sample_scene(11, body_model, random_bodies(11, 2), 320, 240)
    background = render.paint_background(scene)
    painted = background.copy()
    for noise_seed in (1, 2):  # frames differ in their sensor noise only
        frame = dataclasses.replace(scene, style=dataclasses.replace(scene.style, noise_seed=noise_seed))
        once, each = render_scene(frame, body_model, background), render_scene(frame, body_model)
        np.testing.assert_array_equal(once.image, each.image)
        np.testing.assert_array_equal(once.instance_mask, each.instance_mask)
    np.testing.assert_array_equal(background, painted)  # not modified
    with pytest.raises(InputError, match="background"):
        render_scene(scene, body_model, background[:, :10])
