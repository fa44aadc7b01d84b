"""Loading and saving tensors safely: ``torch.load(weights_only=True)``, safetensors or npz; never a free unpickle."""
from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WeightsError
from .paths import check_replace, write_atomic_bytes

if TYPE_CHECKING:
    import torch

META_KEY = "sidbench"


def load_tensors(path: str | Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """Return (tensors on CPU, sidbench metadata or {}) from a .pth/.pt/.bin, .safetensors or .npz file."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; check the path given with @CHECKPOINT or --weights")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open

        tensors, meta = {}, {}
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw = (f.metadata() or {}).get(META_KEY)
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for corrupt files
            raise WeightsError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
        return tensors, metadata_json(raw, path)
    if suffix == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as npz:
                tensors = {k: torch.from_numpy(npz[k].copy()) for k in npz.files if k != f"__{META_KEY}__"}
                raw = str(npz[f"__{META_KEY}__"]) if f"__{META_KEY}__" in npz.files else None
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
                raise WeightsError(f"{path}: refused, the npz holds pickled objects ({exc})") from None
            raise WeightsError(f"{path}: not a readable npz file ({exc})") from None
        except (OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:  # a cut zip, or no zip at all
            raise WeightsError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc})") from None
        return tensors, metadata_json(raw, path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic not in (b"PK", b"\x80\x02"):  # torch zip archive, or legacy pickle protocol 2
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (neither a torch zip nor a legacy torch file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        first = lines[0] if lines else "unsafe pickle"
        raise WeightsError(
            f"{path}: refused to load, it holds pickled objects beyond plain tensors ({first}); if you trust its "
            f"source, convert it once to plain tensors: {convert_command(path)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip errors, truncated files ...
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and META_KEY in obj and isinstance(obj.get("state_dict"), dict):
        meta = metadata_json(obj[META_KEY], path) if isinstance(obj[META_KEY], str) else {}
        obj = obj["state_dict"]
    obj = unwrap_training_dump(obj)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    return dict(obj), meta


def metadata_json(raw: str | None, path: Path) -> Any:
    """sidbench's metadata string of a checkpoint, parsed (``{}`` when there is none); not JSON: one line."""
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise WeightsError(f"{path}: its sidbench metadata is not valid JSON ({type(exc).__name__}: "
                           f"{str(exc)[:120]}); the file is damaged or was not written by sidbench") from None


TRAINING_DUMP_KEYS = ("model", "state_dict", "net", "netC")  # where training scripts put the weights (in this order);
# netC: the classifier of the GANDCTAnalysis-style trainers (AIGCDetectBenchmark, SIDBench: Gram-Net, FreDect, RPTC)


def unwrap_training_dump(obj: Any) -> Any:
    """The state dict inside a training dump (``{'model': sd, 'optimizer': ..., 'total_steps': ...}``,
    ``{'state_dict': sd}``, ``{'net': sd}``, ``{'netC': sd}``); anything else as it is."""
    if isinstance(obj, dict):
        for key in TRAINING_DUMP_KEYS:
            if isinstance(obj.get(key), dict):
                return obj[key]
    return obj


def strip_prefix(state: dict[str, "torch.Tensor"], prefix: str = "module.") -> dict[str, "torch.Tensor"]:
    """Keys without ``prefix`` where every key has it (``module.`` of a DataParallel-wrapped training)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def convert_command(path: str | Path) -> str:
    """A one-line shell command that rewrites a pickled checkpoint as plain tensors (for trusted files only);
    the paths are shell-quoted, so a file name such as ``x$(touch y).pth`` is only a name when pasted."""
    import shlex

    out = Path(path).with_suffix(".tensors.pth")
    code = ("import sys, torch; c = torch.load(sys.argv[1], weights_only=False); "
            "c = c.get(\"model\", c.get(\"state_dict\", c)) if isinstance(c, dict) else c.state_dict(); "
            "torch.save({k: v for k, v in c.items() if torch.is_tensor(v)}, sys.argv[2])")
    return (f"python -c {shlex.quote(code)} {shlex.quote(str(path))} {shlex.quote(str(out))} "
            f"(then use {shlex.quote(str(out))})")


def save_tensors(path: str | Path, tensors: dict[str, "torch.Tensor"], meta: dict[str, Any]) -> Path:
    """Write safetensors with JSON metadata, atomically (temp file + rename, no link followed)."""
    from safetensors.torch import save

    path = Path(path).expanduser()
    if path.suffix.lower() != ".safetensors":
        path = path.with_suffix(path.suffix + ".safetensors") if path.suffix else path.with_suffix(".safetensors")
    check_replace(path)  # before any folder is made: a linked folder is refused, not created through
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic_bytes(path, save(clean, metadata={META_KEY: json.dumps(meta, default=str)}))
    return path


def non_finite_tensor(tensors: dict[str, "torch.Tensor"]) -> str | None:
    """The name of the first floating-point tensor holding NaN or Inf, or None."""
    import torch

    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            if not bool(torch.isfinite(t).all()):
                return name
    return None


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path, remember: bool = True) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime, inode, ctime) so big weights are hashed once:
    a file replaced (new inode) or rewritten in place (new ctime, which no tool can set back) is hashed again.
    ``remember=False``: hash without reading or writing the memo in the user's cache (a file just written)."""
    from .paths import cache_dir, write_atomic

    if not remember:
        return _sha256_of(path)
    stat = path.stat()
    memo_path = cache_dir() / "file-hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict) or not isinstance(memo.get(key, ""), str):
        memo = {}
    if key not in memo:
        memo[key] = _sha256_of(path)
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(memo_path, json.dumps(memo))
        except OSError:  # a read-only cache folder only costs hashing again next time
            pass
    return memo[key]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A safetensors checkpoint's sidbench metadata without reading its tensors ({} for other formats, for an
    unreadable file or for metadata that is not a JSON table: loading the file reports those)."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        meta = json.loads(raw) if raw else {}
    except Exception:  # noqa: BLE001 - the full load that follows names what is wrong with the file
        return {}
    return meta if isinstance(meta, dict) else {}
