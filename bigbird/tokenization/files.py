"""Find a tokenizer's files in a local folder or a HuggingFace hub repository (through the hub cache)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bigbird.hub import is_local, resolve_file

TOKENIZER_FILE = "tokenizer.json"
SPM_FILE = "spiece.model"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


@dataclass
class TokenizerFiles:
    """What a tokenizer folder holds: the backend files (either may be missing) and the parsed configs."""

    source: str
    tokenizer_json: Path | None = None
    spm_model: Path | None = None
    config: dict = field(default_factory=dict)
    special_tokens_map: dict = field(default_factory=dict)


def _read_json(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, not {type(data).__name__}")
    return data


def resolve_tokenizer_files(path_or_hub_id: str | os.PathLike, *, revision: str | None = None,
                            cache_dir: str | os.PathLike | None = None,
                            local_files_only: bool = False) -> TokenizerFiles:
    """Locate ``tokenizer.json`` / ``spiece.model`` and the JSON configs of a tokenizer.

    Args:
        path_or_hub_id: A local folder, a single ``tokenizer.json`` / ``.model`` file, or a hub repo id.
        revision: Hub branch, tag or commit (hub ids only).
        cache_dir: Hub cache folder; defaults to ``HF_HUB_CACHE`` (read at call time) or the hub default.
        local_files_only: Never touch the network (also implied by ``HF_HUB_OFFLINE=1``).

    Returns:
        The files found and the parsed ``tokenizer_config.json`` / ``special_tokens_map.json``.

    Raises:
        ValueError: If ``path_or_hub_id`` is empty or a config file is not valid JSON.
        TypeError: If ``path_or_hub_id`` is not a string or path.
        FileNotFoundError: If the folder or repository does not exist or holds neither backend file.
    """
    if not isinstance(path_or_hub_id, (str, os.PathLike)):
        raise TypeError(f"path_or_hub_id must be a str or os.PathLike, not {type(path_or_hub_id).__name__}")
    name = os.fspath(path_or_hub_id)
    if not name.strip():
        raise ValueError(f"path_or_hub_id must not be empty, got {name!r}")
    files = TokenizerFiles(source=name)
    names = (CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_FILE, SPM_FILE)
    if is_local(name):
        path = Path(name).expanduser()
        if path.is_file():
            if path.suffix == ".json":
                files.tokenizer_json = path
            elif path.suffix == ".model":
                files.spm_model = path
            else:
                raise ValueError(f"{name!r} is neither a tokenizer.json nor a SentencePiece .model file")
            return files
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer folder {name!r} does not exist")
        found = {n: (path / n if (path / n).is_file() else None) for n in names}
    else:
        found = {n: resolve_file(name, n, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                 required=False) for n in names}
    files.tokenizer_json, files.spm_model = found[TOKENIZER_FILE], found[SPM_FILE]
    if files.tokenizer_json is None and files.spm_model is None:
        if is_local(name):
            raise FileNotFoundError(f"folder {name!r} holds neither {TOKENIZER_FILE} nor {SPM_FILE}")
        raise FileNotFoundError(f"hub repository {name!r} (revision {revision or 'main'}) holds neither "
                                f"{TOKENIZER_FILE} nor {SPM_FILE}, or is not in the cache and the hub is unreachable")
    files.config = _read_json(found[CONFIG_FILE])
    files.special_tokens_map = _read_json(found[SPECIAL_TOKENS_MAP_FILE])
    return files
