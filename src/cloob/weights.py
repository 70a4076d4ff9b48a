"""Loading weights safely: safetensors, torch files with ``weights_only=True``, TorchScript archives.

A pickle that needs arbitrary code to load is refused with a clear error: a
checkpoint from an untrusted source must never run code on this machine.
TorchScript archives (OpenAI's released CLIP files) are read without
``torch.jit.load``, which would run the archive's ``__setstate__`` code: a
restricted unpickler rebuilds only tensors and plain containers
(:func:`load_torchscript_state`).
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cloob.errors import CloobError, first_line


class CheckpointError(CloobError, RuntimeError):
    """A checkpoint that cannot be (safely) loaded."""


def safe_torch_load(path: str | Path):
    """``torch.load(path, weights_only=True)``, with a clear error for untrusted pickles."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as e:  # a truncated or damaged archive
        raise CheckpointError(f"cannot read {path}: {first_line(e, 200)}") from None
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it is a pickle that needs arbitrary code to load ({first_line(e, 200)}). "
            "cloob loads only safetensors or weights-only torch files; re-save the weights as a plain "
            "state dict or as safetensors."
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a weights-only torch file.

    Accepts open_clip's conventions: ``{"state_dict": ...}`` wrappers and the
    ``module.`` prefix of DistributedDataParallel checkpoints.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as e:  # noqa: BLE001 - safetensors' own error type for a damaged file
            raise CheckpointError(f"cannot read {path}: {first_line(e, 200)}") from None
    state = safe_torch_load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


# TorchScript archives: torch.jit.load would execute the archive's TorchScript (``__setstate__``
# methods run at load time); these are the only globals its data.pkl may name here.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _ScriptObject:
    """A TorchScript object (a module, usually) as plain data: its class name and its attributes."""

    qualname = ""
    state: dict = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"__state__": state}


def _script_class(qualname: str) -> type:
    # the pickle's NEWOBJ needs a type: an inert subclass that only records the name
    return type("ScriptObject", (_ScriptObject,), {"qualname": qualname})


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _passthrough(value, *_):
    return value


class _TorchScriptUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        from torch._utils import _rebuild_parameter, _rebuild_tensor_v2

        if module.startswith("__torch__"):
            return _script_class(f"{module}.{name}")
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        allowed = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
                   ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
                   ("collections", "OrderedDict"): dict}
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch.jit._pickle" and (name.startswith("build_") or name == "restore_type_tag"):
            return _passthrough  # typed-list builders and type tags: the value itself
        raise pickle.UnpicklingError(f"the TorchScript archive names {module}.{name}, which cloob does not load")

    def persistent_load(self, pid):
        kind, stype, key, _location, numel = pid
        if kind != "storage" or not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=stype.dtype) if raw else torch.empty(0, dtype=stype.dtype)
        if flat.numel() != numel:
            raise pickle.UnpicklingError(f"storage {key} holds {flat.numel()} values, the archive says {numel}")
        return torch.storage.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=stype.dtype, _internal=True)


_CLASS_RE = re.compile(r"^class (\w+)\(Module\):\n((?:  .*\n|\n)*)", re.M)
_LIST_RE = re.compile(r"^  (__parameters__|__buffers__) = \[([^\]]*)\]", re.M)


def _declared_tensors(archive: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    """{class qualname: names of its parameters and buffers}, read from the archive's code listing.

    Only these are state-dict entries; other tensor attributes (e.g. a plain attention mask) are not.
    """
    out = {}
    code = f"{prefix}/code/"
    for name in archive.namelist():
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        module = name[len(code):-3].replace("/", ".")
        for cls, body in _CLASS_RE.findall(archive.read(name).decode("utf-8", "replace")):
            names = set()
            for _, items in _LIST_RE.findall(body):
                names.update(re.findall(r'"([^"]+)"', items))
            out[f"{module}.{cls}"] = names
    return out


def is_torchscript(path: str | Path) -> bool:
    """True for a TorchScript archive (a zip with ``<name>/code/`` and ``<name>/data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("/data.pkl") for n in names)


def load_torchscript_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict (parameters and buffers, dotted names) of a TorchScript module archive, run-free.

    The archive's ``data.pkl`` is read by a restricted unpickler that builds tensors, plain
    containers and inert stand-ins for the archive's classes; no TorchScript or Python code of the
    archive runs. Parameters and buffers are told from other tensor attributes by the
    ``__parameters__``/``__buffers__`` lists of the archive's code listing.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pkl:
                raise CheckpointError(f"{path} is a zip archive but not a TorchScript module (no <name>/data.pkl)")
            prefix = pkl[0].split("/")[0]
            root = _TorchScriptUnpickler(z.read(pkl[0]), z, prefix).load()
            declared = _declared_tensors(z, prefix)
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
        raise CheckpointError(f"cannot read the TorchScript archive {path}: {first_line(e, 200)}") from None
    if not isinstance(root, _ScriptObject):
        raise CheckpointError(f"{path} is a TorchScript archive without a module at its root")
    state: dict[str, torch.Tensor] = {}

    def walk(obj: _ScriptObject, prefix: str) -> None:
        keep = declared.get(obj.qualname)
        for name, value in obj.state.items():
            if isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{name}.")
            elif isinstance(value, torch.Tensor) and (keep is None or name in keep):
                state[f"{prefix}{name}"] = value.detach()

    walk(root, "")
    return state


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """``safetensors.torch.save_file``, then the mode any new file gets (0644 under umask 022).

    safetensors creates its file with mode 0600, unlike every other file of a checkpoint.
    """
    save_file(tensors, path)
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask: from /proc (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
