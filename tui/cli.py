"""The `parakeet-tui` command: `transcribe` runs headless; anything else is the app's."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["transcribe"]:
        from .transcribe_cli import run

        return run(args[1:])
    if args == ["--version"]:
        from .transcribe_cli import run

        return run(["--version"])
    return run_app(args)


def run_app(args: list[str]) -> int:
    """The interactive app: tui.app's `main(args) -> int`, once it exists."""
    try:
        app = importlib.import_module(f"{__package__}.app")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.app":
            raise
        print(
            "parakeet-tui: the interactive app is not built yet; to transcribe files, see "
            "`parakeet-tui transcribe --help`",
            file=sys.stderr,
        )
        return 2
    return app.main(args)


if __name__ == "__main__":
    sys.exit(main())
