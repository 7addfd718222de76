import sys
from pathlib import Path

import pytest

# The test folders mirror the package (tests/engine/ tests depthscope/engine/, ...) and have no
# __init__.py: pytest imports each test file by its basename, so basenames stay unique across
# folders. Shared helpers (tiny_models, naive, ...) live here at the root, importable from every
# folder; a helper only one folder uses lives in that folder.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama with a real (tiny, byte-level BPE) tokenizer: loadable by path, offline."""
    from tiny_models import save_tiny_model_dir

    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Tests never touch the user's model cache unless they ask for it."""
    if "DEPTHSCOPE_TEST_REAL_CACHE" not in __import__("os").environ:
        monkeypatch.setenv("DEPTHSCOPE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def main_with_handler(monkeypatch):
    """``depthscope`` main on ``argv`` with the parsed command's handler replaced by ``handler``:
    how the CLI treats what a command raises or returns, without running the command."""
    import depthscope.cli as cli

    def run(handler, argv: list[str]) -> int:
        parser = cli.build_parser()
        real = parser.parse_args

        def parse(args=None):
            parsed = real(args)
            parsed.handler = handler
            return parsed

        monkeypatch.setattr(parser, "parse_args", parse)
        monkeypatch.setattr(cli, "build_parser", lambda: parser)
        return cli.main(argv)

    return run
