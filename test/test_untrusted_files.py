"""Crafted files against every loader of the project: pickles that would run code (legacy and zip
checkpoints, plain pickles; direct globals and dotted walks through allowed modules), shape bombs, empty
and truncated files. Nothing runs (each payload would create a marker file), nothing huge is allocated,
every failure is the project's error naming the file (and the refused global), and real-format files
still load."""

import io
import pickle
import shutil
import struct
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from fasthmr_model.body import load_body_model_file
from fasthmr_model.checkpoints import load_checkpoint_state
from fasthmr_model.cli import main
from fasthmr_model.data import motion
from fasthmr_model.data.amass import read_amass
from fasthmr_model.data.datasets import read_3dpw, read_emdb
from fasthmr_model.errors import BodyModelError, BundleError, CheckpointError, FastHMRError
from fasthmr_model.pickles import MAX_ARRAY_BYTES
from fasthmr_model.runtime import create_session
from fasthmr_model.torch_files import load_torch_checkpoint
from test_body_model import _fake_class, _modules_while_pickling
from test_checkpoints import SMALL, hmr2_state, lightning_checkpoint

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "fasthmr_model" / "default_bundle"
# The crafted protocol-4 walks make torch warn that it does not expect protocol 4; it refuses them all the same.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4:UserWarning")


# ---------------------------------------------------------------- pickle opcodes, written out by hand
def _text(text: str) -> bytes:
    encoded = text.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded  # BINUNICODE


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()  # GLOBAL, as protocols 0-3 (and Python 2) write it


def _walk(module: str, dotted_name: str) -> bytes:
    return _text(module) + _text(dotted_name) + b"\x93"  # STACK_GLOBAL: protocol 4 resolves dotted names


def _call(function: bytes, *arguments: bytes) -> bytes:
    return function + b"(" + b"".join(arguments) + b"tR"  # MARK ... TUPLE REDUCE


def _list(*items: bytes) -> bytes:
    return b"](" + b"".join(items) + b"e"  # EMPTY_LIST MARK ... APPENDS


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _pickle(body: bytes, protocol: int = 2) -> bytes:
    return b"\x80" + bytes([protocol]) + body + b"."


def _touch(marker: Path) -> bytes:
    return _text(f"touch {marker}")


def _python_writes(marker: Path) -> bytes:
    return _text(f"open({str(marker)!r}, 'w').close()")


# (the global the loaders must refuse and name, a pickle that creates `marker` when unpickled freely)
PAYLOADS = {
    "os.system": lambda m: _pickle(_call(_global("os", "system"), _touch(m))),
    "posix.system": lambda m: _pickle(_call(_global("posix", "system"), _touch(m))),
    "builtins.eval": lambda m: _pickle(_call(_global("builtins", "eval"), _python_writes(m))),
    "builtins.exec": lambda m: _pickle(_call(_global("builtins", "exec"), _python_writes(m))),
    "builtins.getattr": lambda m: _pickle(_call(
        _call(_global("builtins", "getattr"), _call(_global("builtins", "__import__"), _text("os")), _text("system")),
        _touch(m))),
    # __import__ first (memo 0 keeps the module), then getattr on it.
    "builtins.__import__": lambda m: _pickle(
        _call(_global("builtins", "__import__"), _text("os")) + b"p0\n0"
        + _call(_call(_global("builtins", "getattr"), b"g0\n", _text("system")), _touch(m))),
    "subprocess.run": lambda m: _pickle(_call(_global("subprocess", "run"), _list(_text("touch"), _text(str(m))))),
    "subprocess.Popen": lambda m: _pickle(_call(_global("subprocess", "Popen"), _list(_text("touch"), _text(str(m))))),
    # Attribute walks from modules an unpickler might allow by prefix (both reach os.system today).
    "torch.os.system": lambda m: _pickle(_call(_walk("torch", "os.system"), _touch(m)), protocol=4),
    "numpy.lib._format_impl.os.system": lambda m: _pickle(
        _call(_walk("numpy.lib._format_impl", "os.system"), _touch(m)), protocol=4),
}


def _wait_for(marker: Path, seconds: float) -> bool:
    """Whether `marker` appears within `seconds` (subprocess.Popen does not wait for its child)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(0.02)
    return marker.exists()


@pytest.mark.parametrize("refused", PAYLOADS)
def test_every_payload_really_runs_when_unpickled_freely(tmp_path, refused):
    """The control: the crafted pickles are live attacks, so the refusals below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(PAYLOADS[refused](marker))
    assert _wait_for(marker, 5.0)


# ---------------------------------------------------------------- containers: how a loader gets the pickle
def _zip_checkpoint(path: Path, data_pkl: bytes) -> Path:
    """A torch.save zip checkpoint whose data.pkl is replaced by `data_pkl` (every other record kept)."""
    template = path.with_suffix(".template")
    torch.save({"weight": torch.zeros(2)}, template)
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, data_pkl if info.filename.endswith("/data.pkl") else source.read(info))
    template.unlink()
    return path


def _legacy_checkpoint(path: Path, main_pickle: bytes) -> Path:
    """A torch legacy (pre-zip) checkpoint: torch's three header pickles, then `main_pickle`."""
    system = {"protocol_version": torch.serialization.PROTOCOL_VERSION, "little_endian": sys.byteorder == "little",
              "type_sizes": {"short": 2, "int": 4, "long": 4}}
    header = b"".join(pickle.dumps(value, protocol=2) for value in
                      (torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION, system))
    path.write_bytes(header + main_pickle)
    return path


CONTAINERS = {
    "plain pickle": lambda path, pkl: (path.write_bytes(pkl), path)[1],
    "legacy checkpoint": _legacy_checkpoint,
    "zip checkpoint": _zip_checkpoint,
}


@pytest.fixture(scope="module")
def body():
    return motion.synthetic_body_model()


def _resume(path):
    """The training loop resuming the run folder that holds `path`, as `fasthmr train vae --run R` does."""
    import torch

    from fasthmr_model.decoder.train import TrainingConfig
    from fasthmr_model.train.loop import train_loop

    layer = torch.nn.Linear(1, 1)
    train_loop(kind="vae", run=path.parent, modules={"model": layer}, config=TrainingConfig(steps=1, batch_size=1),
               loss_of_step=lambda step: {"total": layer(torch.ones(1, 1)).sum()}, samples="windows", progress=False)


def _run_folder_loaders():
    from fasthmr_model.decoder.train import load_vae
    from fasthmr_model.train.encoder import EncoderTrainingConfig, training_provenance
    return {"load_vae": lambda path: load_vae(path.parent), "resume": _resume,
            "training_provenance": lambda path: training_provenance(path.parent, path.parent, EncoderTrainingConfig())}


TORCH_LOADERS = {"load_torch_checkpoint": "load_torch_checkpoint", "hmr2-converter": "hmr2"}
PICKLE_LOADERS = ["smpl-pkl", "3dpw", "emdb"]


def _loader(name: str, body):
    """name -> a function of the file's path that loads it as that loader does."""
    loaders = {
        "load_torch_checkpoint": load_torch_checkpoint,
        "hmr2": load_checkpoint_state,
        "smpl-pkl": load_body_model_file,
        "3dpw": lambda path: read_3dpw(path, path.parent / "images", body),
        "emdb": lambda path: read_emdb(path, body),
        "smpl-npz": load_body_model_file,
        "amass": read_amass,
        "encoder-onnx": create_session,
        "decoder-onnx": create_session,
    }
    if name not in loaders:
        loaders.update(_run_folder_loaders())
    return loaders[name]


def _file_name(loader: str) -> str:
    return {"smpl-pkl": "model.pkl", "3dpw": "sequence.pkl", "emdb": "P0_data.pkl", "smpl-npz": "model.npz",
            "amass": "motion.npz", "encoder-onnx": "encoder.onnx", "decoder-onnx": "decoder.onnx",
            }.get(loader, "checkpoint.pt")


def _assert_refused(load, path: Path, *mentions: str) -> FastHMRError:
    with pytest.raises(FastHMRError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message
    for mention in mentions:
        assert mention in message, message
    return caught.value


def _ran(marker: Path, refused: str) -> bool:
    return _wait_for(marker, 0.3 if refused == "subprocess.Popen" else 0.0)


@pytest.mark.parametrize("refused", PAYLOADS)
@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("loader", TORCH_LOADERS)
def test_checkpoint_loaders_refuse_code_and_name_it(tmp_path, body, loader, container, refused):
    marker = tmp_path / "ran"
    path = CONTAINERS[container](tmp_path / "checkpoint.pt", PAYLOADS[refused](marker))
    error = _assert_refused(_loader(TORCH_LOADERS[loader], body), path, f"refused the global {refused}")
    assert isinstance(error, CheckpointError)
    assert not _ran(marker, refused)


# Run folders (`fasthmr train vae --run R` resuming, `--vae-run R`, a finished run's provenance).
@pytest.mark.parametrize("refused", ["os.system", "torch.os.system"])
@pytest.mark.parametrize("container", ["legacy checkpoint", "zip checkpoint"])
@pytest.mark.parametrize("loader", ["load_vae", "resume", "training_provenance"])
def test_run_folder_loaders_refuse_code_and_name_it(tmp_path, body, loader, container, refused):
    marker = tmp_path / "ran"
    path = CONTAINERS[container](tmp_path / "checkpoint.pt", PAYLOADS[refused](marker))
    error = _assert_refused(_loader(loader, body), path, f"refused the global {refused}")
    assert isinstance(error, CheckpointError)
    assert not _ran(marker, refused)


@pytest.mark.parametrize("refused", PAYLOADS)
@pytest.mark.parametrize("loader", PICKLE_LOADERS)
def test_dataset_and_body_model_pickles_refuse_code_and_name_it(tmp_path, body, loader, refused):
    marker = tmp_path / "ran"
    path = tmp_path / _file_name(loader)
    path.write_bytes(PAYLOADS[refused](marker))
    _assert_refused(_loader(loader, body), path, f"refusing to load {refused}")
    assert not _ran(marker, refused)


def test_the_converter_cli_refuses_a_payload_without_running_it(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = _zip_checkpoint(tmp_path / "hmr2.ckpt", PAYLOADS["torch.os.system"](marker))
    assert main(["convert-hmr2", str(path), "--out", str(tmp_path / "bundle")]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "torch.os.system" in error
    assert not marker.exists() and not (tmp_path / "bundle").exists()


def _npy(header: dict, data: bytes) -> bytes:
    """An .npy member: magic, a version 1.0 header declaring `header`, then `data`."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + data


@pytest.mark.parametrize("loader", ["smpl-npz", "amass"])
def test_npz_members_with_pickled_objects_are_refused_without_running_them(tmp_path, body, loader):
    marker = tmp_path / "ran"
    path = tmp_path / _file_name(loader)
    member = _npy({"descr": "|O", "fortran_order": False, "shape": (1,)}, PAYLOADS["os.system"](marker))
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("v_template", "poses"):  # a key each reader reads
            archive.writestr(f"{name}.npy", member)
    _assert_refused(_loader(loader, body), path, "pickled")
    assert not marker.exists()


# ---------------------------------------------------------------- shape bombs: refused before allocating
def _sparse_and_chumpy_pickle(path: Path, **content_by_key) -> Path:
    """An SMPL-style pickle whose values are built by the given functions of the fake chumpy/scipy classes."""
    classes = {"Ch": _fake_class("Ch"), "Select": _fake_class("Select"), "csc_matrix": _fake_class("csc_matrix")}
    content = {key: build(classes) for key, build in content_by_key.items()}
    with _modules_while_pickling(**{"chumpy.ch": [classes["Ch"]], "chumpy.reordering": [classes["Select"]],
                                    "scipy.sparse.csc": [classes["csc_matrix"]]}):
        path.write_bytes(pickle.dumps(content, protocol=2))
    return path


def _sparse_bomb(classes):
    # 1e6 x 1e6 dense float64 would be 8 TB; the stored matrix has one entry.
    return classes["csc_matrix"](_shape=(10**6, 10**6), data=np.ones(1), indices=np.zeros(1, np.int32),
                                 indptr=np.concatenate([[0], np.ones(10**6, np.int32)]).astype(np.int32),
                                 format="csc")


def _sparse_index_outside(classes):
    return classes["csc_matrix"](_shape=(24, 10), data=np.ones(1), indices=np.array([50], np.int32),
                                 indptr=np.array([0] + [1] * 10, np.int32), format="csc")


def _select_outside(classes):
    return classes["Select"](a=classes["Ch"](x=np.zeros(6)), idxs=np.array([0, 7]), preferred_shape=(2,))


@pytest.mark.parametrize("build, message", [
    (_sparse_bomb, "declares the shape (1000000, 1000000)"),
    (_sparse_index_outside, "indices outside the shape"),
    (_select_outside, "outside its 6 values"),
])
def test_smpl_stand_ins_check_shapes_and_indices_first(tmp_path, build, message):
    path = _sparse_and_chumpy_pickle(tmp_path / "model.pkl", J_regressor=build)
    error = _assert_refused(load_body_model_file, path, message, "'J_regressor'")
    assert isinstance(error, BodyModelError)


_HUGE = (10**6, 10**6)
_F8 = _call(_global("numpy", "dtype"), _text("f8"), b"\x89\x88")  # numpy.dtype("f8", False, True)
_O8 = _call(_global("numpy", "dtype"), _text("O8"), b"\x89\x88")
_SHAPE = b"(" + _int(_HUGE[0]) + _int(_HUGE[1]) + b"t"
ARRAY_BOMBS = {
    # numpy's own form: an empty array, then BUILD with the declared shape (object items never stored)
    "object array state": _call(_global("numpy.core.multiarray", "_reconstruct"), _global("numpy", "ndarray"),
                                b"(" + _int(0) + b"t", _text("b"))
                          + b"(" + _int(1) + b"(" + _int(10**5) + _int(10**5) + b"t" + _O8 + b"\x89"
                          + _list(_int(1)) + b"tb",
    "float array state": _call(_global("numpy._core.multiarray", "_reconstruct"), _global("numpy", "ndarray"),
                               b"(" + _int(0) + b"t", _text("b"))
                         + b"(" + _int(1) + _SHAPE + _F8 + b"\x89" + _text("") + b"tb",
    "_reconstruct with the shape": _call(_global("numpy.core.multiarray", "_reconstruct"), _global("numpy", "ndarray"),
                                         _SHAPE, _text("b")),
    "ndarray called": _call(_global("numpy", "ndarray"), _SHAPE),
    "ndarray NEWOBJ": _global("numpy", "ndarray") + b"(" + _SHAPE + b"t\x81",
    "copyreg._reconstructor": _call(_global("copy_reg", "_reconstructor"), _global("numpy", "ndarray"),
                                    _global("numpy", "ndarray"), _SHAPE),
}


@pytest.mark.parametrize("bomb", ARRAY_BOMBS)
@pytest.mark.parametrize("loader", PICKLE_LOADERS)
def test_pickled_arrays_declaring_huge_shapes_are_refused_before_allocating(tmp_path, body, loader, bomb):
    path = tmp_path / _file_name(loader)
    path.write_bytes(_pickle(b"}" + _text("v_template") + ARRAY_BOMBS[bomb] + b"s"))  # {"v_template": bomb}
    _assert_refused(_loader(loader, body), path, "declares")


@pytest.mark.parametrize("loader", ["smpl-npz", "amass"])
def test_npz_members_declaring_huge_shapes_are_refused_before_allocating(tmp_path, body, loader):
    path = tmp_path / _file_name(loader)
    member = _npy({"descr": "<f8", "fortran_order": False, "shape": _HUGE}, b"\0" * 64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("v_template", "poses"):
            archive.writestr(f"{name}.npy", member)
    _assert_refused(_loader(loader, body), path, "(1000000, 1000000)", str(MAX_ARRAY_BYTES))


def test_checkpoints_whose_tensors_claim_more_than_the_file_are_refused(tmp_path):
    # torch.Tensor(1000, 1000) allocates 4 MB (uninitialised) from a 60-byte pickle; 1e5 x 1e5 would be 40 GB.
    path = _zip_checkpoint(tmp_path / "checkpoint.pt", _pickle(b"}" + _text("bomb") + _global("torch", "Tensor")
                                                               + b"(" + _int(1000) + _int(1000) + b"t\x81s"))
    _assert_refused(load_torch_checkpoint, path, "bytes of tensors")


# ---------------------------------------------------------------- empty and truncated files
def _real_file(loader: str, folder: Path, body) -> Path:
    """A real-format file for `loader`, written by the existing tests' builders."""
    from test_body_model import _write_chumpy_era_pickle
    from test_datasets import write_3dpw

    from fasthmr_model.body.synthetic import build_synthetic_body, write_synthetic_body
    path = folder / _file_name(loader)
    if loader in ("load_torch_checkpoint", "hmr2"):
        torch.save(lightning_checkpoint(hmr2_state(SMALL)), path)
    elif loader == "smpl-pkl":
        _write_chumpy_era_pickle(path, build_synthetic_body())
    elif loader == "3dpw":
        write_3dpw(path, body, np.ones(12, bool))
    elif loader == "emdb":
        path.write_bytes(pickle.dumps({"gender": "female", "camera": {"intrinsics": np.eye(3)}}))
    elif loader == "smpl-npz":
        write_synthetic_body(path)
    elif loader == "amass":
        np.savez(path, poses=np.zeros((30, 156)), trans=np.zeros((30, 3)), betas=np.zeros(16),
                 mocap_framerate=np.array(30.0), gender=np.array("female"))
    elif loader.endswith("onnx"):
        shutil.copy(DEFAULT_BUNDLE / path.name, path)
    return path


ALL_LOADERS = ["load_torch_checkpoint", "hmr2", *PICKLE_LOADERS, "smpl-npz", "amass", "encoder-onnx", "decoder-onnx"]


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["empty", "truncated"])
@pytest.mark.parametrize("loader", ALL_LOADERS)
def test_empty_and_truncated_files_fail_with_the_projects_error(tmp_path, body, loader, keep):
    path = _real_file(loader, tmp_path, body)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    error = _assert_refused(_loader(loader, body), path)
    if loader.endswith("onnx"):
        assert isinstance(error, BundleError)


# ---------------------------------------------------------------- real-format files still load
def test_hmr2_checkpoint_with_its_yacs_config_loads_as_saved(tmp_path):
    """HMR2.0's Lightning checkpoint as torch.save writes it: the yacs CfgNode (a dict subclass with
    attributes) pickles as NEWOBJ + SETITEMS + BUILD, and loads as an inert OrderedDict."""
    class CfgNode(dict):
        def __init__(self, values=None):
            super().__init__(values or {})
            self.__dict__.update({"__immutable__": False, "__deprecated_keys__": set(), "__renamed_keys__": {},
                                  "__new_allowed__": False})

    CfgNode.__qualname__ = "CfgNode"
    CfgNode.__module__ = "yacs.config"
    with _modules_while_pickling(**{"yacs.config": [CfgNode]}):
        config = CfgNode({"MODEL": CfgNode({"IMAGE_SIZE": 256, "BBOX_SHAPE": [192, 256]}), "SEED": 0})
        checkpoint = lightning_checkpoint(hmr2_state(SMALL))
        checkpoint.update(hyper_parameters={"cfg": config}, hparams_name="kwargs",
                          callbacks={"ModelCheckpoint{'monitor': None}": {"best_model_score": torch.tensor(0.5),
                                                                          "dirpath": "logs/checkpoints"}})
        torch.save(checkpoint, tmp_path / "hmr2.ckpt")
    assert "yacs" not in sys.modules
    loaded = load_torch_checkpoint(tmp_path / "hmr2.ckpt")
    assert loaded["hyper_parameters"]["cfg"]["MODEL"]["IMAGE_SIZE"] == 256
    state = load_checkpoint_state(tmp_path / "hmr2.ckpt")
    assert state.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(state[key], value) for key, value in checkpoint["state_dict"].items())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_our_run_folder_checkpoints_load_as_saved(tmp_path, legacy):
    """What the training code's torch.save writes today: state dicts, an AdamW state after a step, numbers,
    None, infinities, config dicts with tuples and lists, a kept 'best' model."""
    from fasthmr_model.decoder.train import TrainingConfig
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    optimiser.step()
    state = {"kind": "vae", "model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": 3,
             "wall_s": 1.5, "config": asdict(TrainingConfig()), "latent_scale": 0.7, "start_scores": [1.0, 2.0],
             "best": {"step": 2, "validation": float("inf"), "model": model.state_dict()}, "encoder_errors": None,
             "decoder_config": {"window": 16, "sizes": (1, 2)}, "amass_files": ["a.npz"]}
    torch.save(state, tmp_path / "checkpoint.pt", _use_new_zipfile_serialization=not legacy)
    loaded = load_torch_checkpoint(tmp_path / "checkpoint.pt")
    assert loaded.keys() == state.keys()
    assert loaded["config"] == state["config"] and loaded["best"]["validation"] == float("inf")
    restored = torch.optim.AdamW(model.parameters(), lr=1e-3)
    restored.load_state_dict(loaded["optimiser"])
    assert all(torch.equal(loaded["model"][key], value) for key, value in state["model"].items())


def test_numpy_pickles_of_every_protocol_load_as_plain_arrays(tmp_path, body):
    """EMDB-style pickles from Python 3 (protocol 5 pickles arrays through numpy's _frombuffer)."""
    from fasthmr_model.pickles import load_numpy_pickle
    content = {"a": np.arange(6.0).reshape(2, 3), "b": [np.zeros(2, np.float32), np.array(["x"])],
               "c": np.float64(2.5), "d": {"e": np.array([{"f": np.ones(2)}], dtype=object)}, "g": {1, 2}}
    for protocol in range(2, 6):
        (tmp_path / "p.pkl").write_bytes(pickle.dumps(content, protocol=protocol))
        loaded = load_numpy_pickle(tmp_path / "p.pkl")
        assert type(loaded["a"]) is np.ndarray and type(loaded["d"]["e"][0]["f"]) is np.ndarray
        np.testing.assert_array_equal(loaded["a"], content["a"])
        assert loaded["c"] == 2.5 and loaded["g"] == {1, 2} and loaded["b"][1][0] == "x"
