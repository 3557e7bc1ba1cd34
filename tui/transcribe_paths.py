"""Where each transcript goes: --output-template's fields, --output-dir, and name clashes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

FIELDS = ("filename", "index", "date", "parent")


class TemplateError(ValueError):
    """A template that cannot name files; the message is one line."""


def template_fields(file: str, index: int, date: str) -> dict[str, object]:
    path = Path(file)
    # index stays an int so that "{index:03}" pads it
    return {"filename": path.stem, "index": index, "date": date, "parent": str(path.parent)}


def render_template(template: str, file: str, index: int, date: str) -> str:
    try:
        name = template.format(**template_fields(file, index, date))
    except KeyError as e:
        fields = ", ".join(f"{{{f}}}" for f in FIELDS)
        raise TemplateError(f"unknown field {{{e.args[0]}}} (the fields are {fields})") from None
    except (IndexError, ValueError, AttributeError) as e:
        raise TemplateError(f"{template!r} is not a valid template ({e})") from None
    if not name.strip() or name.endswith(("/", os.sep)):
        raise TemplateError(f"{template!r} gives an empty file name")
    return name


def check_template(template: str) -> None:
    """Raises TemplateError unless template names a file for a typical input."""
    render_template(template, "talk.wav", 1, "20250101")


def output_paths(
    template: str,
    output_dir: Path,
    file: str,
    index: int,
    date: str,
    formats: Sequence[str],
) -> list[Path]:
    """One path per format: the template's name plus the format's extension, under
    output_dir unless the template made it absolute."""
    base = render_template(template, file, index, date)
    paths = []
    for fmt in formats:
        path = Path(f"{base}.{fmt}")
        paths.append(path if path.is_absolute() else output_dir / path)
    return paths


class WrittenPaths:
    """The outputs written so far in a run, so that a later input never overwrites them
    (two inputs named talk.wav in different folders, with the default template)."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}

    @staticmethod
    def _key(path: Path) -> str:
        return os.path.normcase(os.path.abspath(path))

    def owner(self, paths: Iterable[Path]) -> tuple[Path, str] | None:
        """(path, input file) for the first of paths already written, else None."""
        for path in paths:
            owner = self._owners.get(self._key(path))
            if owner is not None:
                return path, owner
        return None

    def add(self, path: Path, file: str) -> None:
        self._owners[self._key(path)] = file
