"""Reading and writing ViTime weights without running arbitrary pickle code.

Two formats:
- upstream ``.pth``: ``torch.save({'args': argparse.Namespace, 'model': state_dict})`` with the
  ``MAE`` wrapper's ``model.`` prefix (and ``module.`` when saved from DataParallel).  Loaded
  with ``torch.load(weights_only=True)`` and a short allow-list of harmless types; anything
  else needs the explicit opt-in ``trust_checkpoint=True``.
- native: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (config), or a directory holding
  ``model.safetensors`` + ``config.json``.
"""
from __future__ import annotations

import argparse
import io
import json
import pickle
import pickletools
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .budget import check_model_memory
from .config import ViTimeConfig

NATIVE_FORMAT = "attnviz-vitime"
NATIVE_VERSION = 1
_PREFIXES = ("module.", "model.")


class CheckpointError(ValueError):
    """A weights file that is missing, foreign, unsafe or does not fit the network."""


@dataclass
class LoadedCheckpoint:
    config: ViTimeConfig
    state_dict: dict[str, torch.Tensor]
    path: Path
    format: str  # "upstream" or "native"
    metadata: dict[str, Any] = field(default_factory=dict)


def _safe_globals() -> list[Any]:
    """Types the released checkpoint's args may hold that are safe to rebuild."""
    allowed: list[Any] = [argparse.Namespace, np.dtype, np.ndarray]
    core = getattr(np, "_core", None) or getattr(np, "core")
    allowed += [core.multiarray.scalar, core.multiarray._reconstruct]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def resolve_native_paths(path: Path) -> tuple[Path, Path] | None:
    """(weights, config) paths if ``path`` names a native checkpoint, else None.

    Two layouts: ``<stem>.safetensors`` + ``<stem>.json``, or a folder holding
    ``model.safetensors`` + ``config.json`` (named by the folder or either file).
    """
    if path.is_dir():
        return path / "model.safetensors", path / "config.json"
    if path.suffix not in (".safetensors", ".json"):
        return None
    pair = (path.with_suffix(".safetensors"), path.with_suffix(".json"))
    folder_form = (path.parent / "model.safetensors", path.parent / "config.json")
    if path in folder_form and not all(p.exists() for p in pair) and all(p.exists() for p in folder_form):
        return folder_form
    return pair


def load_checkpoint(
    path: str | Path, trust_checkpoint: bool = False, max_memory_gb: float | None = None
) -> LoadedCheckpoint:
    """Read a checkpoint (upstream ``.pth`` or native) into a config and a clean state dict.

    The config is validated and its memory estimated (``budget``) before the network is built:
    over the limit (``max_memory_gb``, ``$ATTNVIZ_MAX_MEMORY_GB``, else 4 GB) is a CheckpointError.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    native = resolve_native_paths(path)
    if native is not None:
        return _load_native(path, *native, max_memory_gb=max_memory_gb)
    return _load_upstream(path, trust_checkpoint, max_memory_gb)


def _check_config_memory(config: ViTimeConfig, origin: str, max_memory_gb: float | None) -> None:
    try:
        check_model_memory(config, origin, max_memory_gb)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _corrupt(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is corrupt or truncated (not a readable PyTorch checkpoint): {reason}")


def _unpickler_reason(exc: BaseException) -> str:
    """The one-line reason of a torch.load failure, without torch's advice to load unsafely."""
    text = str(exc).split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return reason.split(". Please use")[0]


def _zip_damage(path: Path) -> str | None:
    """Why the zip archive is damaged (an entry failing its CRC, a bad header), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if bad is None else f"entry {bad!r} fails its CRC check"


def _pickle_globals(path: Path) -> list[str] | None:
    """GLOBAL names of the checkpoint's object pickle, or None when the pickle is not well formed.

    Read with ``pickletools`` (parses opcodes, runs nothing), so a file is only ever said to
    "need code" when it is a readable pickle that names globals; a broken one is corrupt.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                streams = [archive.read(name)]
            count = 1
        else:
            streams, count = [path.read_bytes()], 4  # legacy: magic, protocol, sys info, object
        found: list[str] = []
        handle = io.BytesIO(streams[0])
        for _ in range(count):
            strings: list[str] = []
            for opcode, arg, _pos in pickletools.genops(handle):
                if isinstance(arg, str):
                    strings.append(arg)
                if opcode.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        return found
    except Exception:  # any parse failure means the pickle is broken
        return None


def _load_upstream(path: Path, trust_checkpoint: bool, max_memory_gb: float | None) -> LoadedCheckpoint:
    is_zip = zipfile.is_zipfile(path)
    head = _head(path)
    if not is_zip and head.startswith(b"PK"):
        raise _corrupt(path, "a zip archive without its central directory (cut short?)")
    if not is_zip and not head.startswith(b"\x80"):  # torch's legacy format opens with a pickle
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (expected an upstream ViTime .pth, or a native "
            f".safetensors + .json pair)"
        )
    damage = _zip_damage(path) if is_zip else None
    if damage is not None:
        raise _corrupt(path, damage)
    try:
        if trust_checkpoint:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_safe_globals()):
                payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        needed = _pickle_globals(path)
        if not trust_checkpoint and needed:
            raise CheckpointError(
                f"refusing to unpickle {path}: it is a readable checkpoint that needs code outside "
                f"the safe allow-list ({reason}). Only if you trust this file, pass "
                f"trust_checkpoint=True."
            ) from None
        raise _corrupt(path, reason) from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a damaged file can fail anywhere inside torch.load / pickle
        reason = _unpickler_reason(exc)
        kind = type(exc).__name__
        raise _corrupt(path, reason if reason.startswith(kind) else f"{kind}: {reason}") from None
    if not isinstance(payload, Mapping) or "model" not in payload or "args" not in payload:
        found = sorted(payload.keys()) if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not an upstream ViTime checkpoint: expected a dict with 'args' and "
            f"'model', found {found}"
        )
    try:
        config = ViTimeConfig.from_mapping(payload["args"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its 'args' do not describe a ViTime model: {exc}") from None
    _check_config_memory(config, f"{path} args", max_memory_gb)
    state = _clean_state_dict(payload["model"], path)
    return LoadedCheckpoint(config, state, path, "upstream", {"args": config.extra})


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def _clean_state_dict(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'model' should be a state dict, found {type(state).__name__}")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if name.startswith(prefix):
                    name, changed = name[len(prefix):], True
        cleaned[name] = value
    return cleaned


def _load_native(
    path: Path, weights: Path, config_path: Path, max_memory_gb: float | None = None
) -> LoadedCheckpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for needed in (weights, config_path):
        if not needed.exists():
            raise CheckpointError(
                f"native checkpoint {path} is incomplete: {needed} is missing (a native checkpoint "
                f"is a .safetensors file with a .json config beside it)"
            )
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != NATIVE_FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{config_path} is not an attnviz ViTime config (expected format {NATIVE_FORMAT!r} "
            f"with a 'config' entry)"
        )
    try:  # the config first: it is checked before a byte of weights is read
        config = ViTimeConfig.from_mapping(meta["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: invalid ViTime config: {exc}") from None
    _check_config_memory(config, f"weights config {config_path}", max_memory_gb)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {exc}") from None
    return LoadedCheckpoint(config, _clean_state_dict(state, weights), weights, "native", meta)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Strict key and shape check with an error naming file, key, expected and found shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems: list[str] = []
    for key in missing[:5]:
        problems.append(f"missing key {key!r} (expected shape {tuple(expected[key].shape)})")
    for key in unexpected[:5]:
        problems.append(f"unexpected key {key!r} (shape {tuple(state[key].shape)})")
    for key in expected:
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape):
            problems.append(
                f"key {key!r}: expected shape {tuple(expected[key].shape)}, found "
                f"{tuple(state[key].shape)}"
            )
    if problems:
        more = len(missing) + len(unexpected) - min(len(missing), 5) - min(len(unexpected), 5)
        suffix = f" (and {more} more missing/unexpected keys)" if more > 0 else ""
        raise CheckpointError(
            f"{path} does not fit the ViTime network its config describes: "
            + "; ".join(problems[:8])
            + suffix
        )


def save_native(
    path: str | Path,
    config: ViTimeConfig,
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` + ``<stem>.json``; returns both paths."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        weights, config_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    else:
        path.mkdir(parents=True, exist_ok=True)
        weights, config_path = path / "model.safetensors", path / "config.json"
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(weights))
    weights.chmod(0o644)  # safetensors writes private files; weights are meant to be shared
    meta = {"format": NATIVE_FORMAT, "version": NATIVE_VERSION, "config": config.to_dict()}
    if metadata:
        meta["metadata"] = dict(metadata)
    config_path.write_text(json.dumps(meta, indent=1) + "\n")
    return weights, config_path


def convert_upstream(
    source: str | Path,
    destination: str | Path,
    trust_checkpoint: bool = False,
    max_memory_gb: float | None = None,
) -> tuple[Path, Path]:
    """Convert an upstream ``.pth`` into the native safetensors + JSON format."""
    from .model import ViTimeMAE

    loaded = load_checkpoint(source, trust_checkpoint=trust_checkpoint, max_memory_gb=max_memory_gb)
    model = ViTimeMAE(loaded.config, max_memory_gb=max_memory_gb)
    check_state_dict(model, loaded.state_dict, loaded.path)
    return save_native(
        destination,
        loaded.config,
        loaded.state_dict,
        {"converted_from": str(Path(source).name), "upstream_args": loaded.metadata.get("args", {})},
    )
