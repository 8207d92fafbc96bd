"""Loading PyTorch checkpoints (HMR2.0's .ckpt, our run folders' checkpoint.pt) without running code from them.

A checkpoint is a pickle, and unpickling calls whatever it names. torch.load(weights_only=True) resolves
only an exact table of torch's tensor, storage and dtype rebuilders and a few containers (OrderedDict,
set, ...), in zip and legacy files alike, and refuses every other name, dotted walks such as `torch` +
`os.system` included. We add exactly one name, EXTRA_SAFE_GLOBALS, and never fall back to an unrestricted
load. Export- and training-time module: imports torch.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from fasthmr_model.errors import CheckpointError

# HMR2.0's Lightning checkpoint keeps its yacs config under hyper_parameters. It is rebuilt as an inert
# OrderedDict: torch's unpickler fills only plain dict types with items, the config's own attributes land
# in the OrderedDict's __dict__, and yacs is never imported.
EXTRA_SAFE_GLOBALS = [(OrderedDict, "yacs.config.CfgNode")]

_WHAT_TO_DO = ("Load only the original HMR2.0 checkpoint or a run folder written by `fasthmr train`; "
               "nothing in the file was run")


def _refusal(message: str, path: Path) -> str:
    """The part of torch's weights-only error that says what was refused (not its advice to unlock it), and
    the refused global: torch names those it meets as GLOBAL, the others are found by _stack_globals."""
    message = " ".join(message.split())
    stated = re.search(r"(Unsupported global|Unsupported operand|Trying to|Can only)\b.*?(?=\.(?: |$)|$)", message)
    reason = stated.group(0) if stated else "not a tensor, container or number"
    found = re.search(r"GLOBAL (\S+)", reason)
    if found:
        name = found.group(1)
        # torch strips "builtins." from the names it reports.
        return f"refused the global {name if '.' in name else 'builtins.' + name} ({reason})"
    named = _stack_globals(path)
    return f"refused the global {', '.join(named)} ({reason})" if named else f"refused ({reason})"


def _stack_globals(path: Path) -> list[str]:
    """The globals the checkpoint's pickles name by STACK_GLOBAL or INST (protocol-4 dotted walks like
    `torch` + `os.system` among them), which torch.save never writes and torch refuses without naming.
    For messages only: the refusing is torch's. Damage ends the scan; what was found is still named."""
    names, strings = [], []
    try:
        with open(path, "rb") as stream:
            data = stream
            if zipfile.is_zipfile(stream):  # (is_zipfile moves the stream: seek back below otherwise)
                with zipfile.ZipFile(stream) as archive:
                    data = io.BytesIO(archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl"))))
            else:
                stream.seek(0)
            for _ in range(4):  # a legacy file: magic number, protocol, system info, then the object
                for opcode, argument, _ in pickletools.genops(data):
                    if opcode.name == "INST":
                        names.append(argument.replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.append(".".join(strings[-2:]))
                    elif isinstance(argument, str):
                        strings.append(argument)
    except Exception:  # noqa: BLE001 - see the docstring
        pass
    return list(dict.fromkeys(names))


def _tensor_bytes(value, storages: dict) -> None:
    """Collects {storage pointer: bytes} of the dense tensors in `value` (dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        if value.layout == torch.strided and not value.is_meta:
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    elif isinstance(value, dict):
        for item in value.values():
            _tensor_bytes(item, storages)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensor_bytes(item, storages)


def load_torch_checkpoint(path: str | Path) -> dict:
    """The dict saved in the PyTorch checkpoint at `path`, with its tensors on the CPU.

    Loaded by torch's weights-only unpickler with EXTRA_SAFE_GLOBALS; what torch.save writes for state
    dicts, optimiser states, numbers, strings and containers of them loads as saved.
    Raises CheckpointError naming the file when it is missing, empty, truncated or no torch file, when it
    names any other global (the refused name is given), when its tensors claim more bytes than the file
    holds (a pickle can size a tensor without storing it), or when it does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"the checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(EXTRA_SAFE_GLOBALS):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"cannot load the checkpoint {path}: {_refusal(str(error), path)}. "
                              f"{_WHAT_TO_DO}") from None
    except Exception as error:  # torch raises assorted types for empty, truncated or non-torch files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint ({type(error).__name__}: {first_line}); "
                              "is the file complete?") from None
    storages: dict = {}
    _tensor_bytes(content, storages)
    if sum(storages.values()) > path.stat().st_size:
        raise CheckpointError(f"the checkpoint {path} declares {sum(storages.values())} bytes of tensors in a "
                              f"{path.stat().st_size}-byte file: it is crafted or damaged. {_WHAT_TO_DO}")
    if not isinstance(content, dict):
        raise CheckpointError(f"the checkpoint {path} holds a {type(content).__name__}, not a dict. {_WHAT_TO_DO}")
    return content
