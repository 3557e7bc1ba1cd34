"""`parakeet-tui transcribe`'s options: argparse, environment variables and validation.

Flag names, environment variables and defaults follow parakeet-mlx 0.6.0's `transcribe`, so
that scripts written for it keep working. An option given on the command line wins over its
environment variable, which wins over the default. This module imports neither MLX nor the
engine, so that `--help` and option errors are instant.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from .transcribe_paths import TemplateError, check_template

PROG = "parakeet-tui transcribe"
DEFAULT_MODEL = "mlx-community/parakeet-tdt-0.6b-v3"
OUTPUT_FORMATS = ("txt", "srt", "vtt", "json")  # asr.export.FORMATS, without importing MLX
FORMAT_CHOICES = (*OUTPUT_FORMATS, "all")
DECODINGS = ("greedy", "beam")

# click's spelling of booleans in environment variables (parakeet-mlx's CLI is click-based)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class UsageError(Exception):
    """An option that cannot be used; the message is one line naming the option."""


@dataclass(frozen=True)
class TranscribeOptions:
    files: list[str]
    model: str = DEFAULT_MODEL
    output_dir: Path = Path(".")
    formats: tuple[str, ...] = ("srt",)
    output_template: str = "{filename}"
    highlight_words: bool = False
    chunk_duration: float | None = 120.0  # None: no chunking
    overlap_duration: float = 15.0
    fp32: bool | None = None  # None: the engine's default for the device
    max_words: int | None = None
    silence_gap: float | None = None
    max_duration: float | None = None
    local_attention: bool | None = None  # None: whatever the model's config says
    local_attention_context_size: int = 256
    cache_dir: Path | None = None
    verbose: bool = False
    decoding: str = "greedy"
    beam: dict[str, float] = field(default_factory=dict)  # asr.Beam's keyword arguments


# ------------------------------------------------------------------------ value parsers


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """parse, with its message shown by argparse (which hides a plain ValueError's)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


# ------------------------------------------------------------------------ the parser


@dataclass(frozen=True)
class _EnvOption:
    env: str
    parse: Callable[[str], Any]
    default: Any
    flag: str


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, returned rather than exiting the process."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _version() -> str:
    try:
        return metadata.version("parakeet-tui")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Builder:
    """Adds options to a parser and remembers which read an environment variable."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.env_options: dict[str, _EnvOption] = {}

    def add(
        self,
        *flags: str,
        env: str | None = None,
        parse: Callable[[str], Any] | None = None,
        default: Any = None,
        help: str,
        metavar: str | None = None,
        group: argparse._ActionsContainer | None = None,
    ) -> None:
        target = group or self.parser
        notes = []
        if default is not None:
            notes.append(f"default: {default}")
        if env:
            notes.append(f"env: {env}")
        text = f"{help} ({'; '.join(notes)})" if notes else help
        kwargs: dict[str, Any] = {"default": None, "help": text.replace("%", "%%")}
        if parse is not None:
            kwargs["type"] = _argparse_type(parse)
            kwargs["metavar"] = metavar
        action = target.add_argument(*flags, **kwargs)
        if env:
            self.env_options[action.dest] = _EnvOption(env, parse or str, default, flags[0])

    def switch(
        self,
        on: str,
        off: str,
        *,
        dest: str,
        env: str | None,
        help_on: str,
        help_off: str,
    ) -> None:
        """A pair of flags setting one tri-state value (None when neither is given)."""
        group = self.parser.add_mutually_exclusive_group()
        suffix = f" (env: {env})" if env else ""
        group.add_argument(
            on, dest=dest, action="store_const", const=True, default=None, help=help_on + suffix
        )
        group.add_argument(off, dest=dest, action="store_const", const=False, help=help_off)
        if env:
            self.env_options[dest] = _EnvOption(env, parse_bool, None, on)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, _EnvOption]]:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Transcribe audio files with a Parakeet model, without the interactive app.",
        epilog=(
            "Output names: --output-template takes {filename} (the input's name without its "
            "extension), {index} (its position among the inputs, from 1; {index:03} pads it), "
            "{date} (YYYYMMDD) and {parent} (the input's folder). The extension is added, and "
            "a relative name is placed under --output-dir."
        ),
    )
    b = _Builder(parser)
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files to transcribe")
    b.add(
        "--model",
        env="PARAKEET_MODEL",
        default=DEFAULT_MODEL,
        help="Hugging Face repo id (from the local cache) or a model folder",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use the small built-in demo model (no download; it knows synthetic English voices)",
    )
    b.add(
        "--output-dir",
        parse=Path,
        default=".",
        help="folder for the transcripts",
        metavar="DIR",
    )
    b.add(
        "--output-format",
        env="PARAKEET_OUTPUT_FORMAT",
        parse=_choice(FORMAT_CHOICES),
        default="srt",
        help=f"one of {', '.join(FORMAT_CHOICES)}",
        metavar="FORMAT",
    )
    b.add(
        "--output-template",
        env="PARAKEET_OUTPUT_TEMPLATE",
        default="{filename}",
        help="name of each output file, without its extension; fields below",
        metavar="TEMPLATE",
    )
    parser.add_argument(
        "--highlight-words",
        action="store_true",
        default=None,
        help="in srt and vtt, one cue per word with the spoken word underlined",
    )
    b.add(
        "--chunk-duration",
        env="PARAKEET_CHUNK_DURATION",
        parse=parse_float,
        default=120.0,
        help="cut long audio into chunks of this many seconds; 0 disables chunking",
        metavar="SECONDS",
    )
    b.add(
        "--overlap-duration",
        env="PARAKEET_OVERLAP_DURATION",
        parse=parse_float,
        default=15.0,
        help="seconds by which consecutive chunks overlap",
        metavar="SECONDS",
    )
    b.switch(
        "--fp32",
        "--bf16",
        dest="fp32",
        env="PARAKEET_FP32",
        help_on="compute in float32 (default: bfloat16 on a GPU, float32 on a CPU)",
        help_off="compute in bfloat16",
    )

    sentences = parser.add_argument_group("sentence splitting (for subtitles)")
    b.add(
        "--max-words",
        env="PARAKEET_MAX_WORDS",
        parse=parse_int,
        help="at most this many words per sentence",
        metavar="N",
        group=sentences,
    )
    b.add(
        "--silence-gap",
        env="PARAKEET_SILENCE_GAP",
        parse=parse_float,
        help="start a new sentence after a silence this long (seconds)",
        metavar="SECONDS",
        group=sentences,
    )
    b.add(
        "--max-duration",
        env="PARAKEET_MAX_DURATION",
        parse=parse_float,
        help="at most this many seconds per sentence",
        metavar="SECONDS",
        group=sentences,
    )

    b.switch(
        "--local-attention",
        "--full-attention",
        dest="local_attention",
        env="PARAKEET_LOCAL_ATTENTION",
        help_on="local attention: memory grows linearly with the audio's length",
        help_off="full attention (default: as the model's config says)",
    )
    b.add(
        "--local-attention-context-size",
        env="PARAKEET_LOCAL_ATTENTION_CTX",
        parse=parse_int,
        default=256,
        help="frames of context on each side, with --local-attention",
        metavar="N",
    )

    beam = parser.add_argument_group("decoding")
    b.add(
        "--decoding",
        env="PARAKEET_DECODING",
        parse=_choice(DECODINGS),
        default="greedy",
        help="greedy or beam",
        metavar="METHOD",
        group=beam,
    )
    b.add(
        "--beam-size",
        env="PARAKEET_BEAM_SIZE",
        parse=parse_int,
        default=5,
        help="hypotheses kept, with --decoding beam",
        metavar="N",
        group=beam,
    )
    b.add(
        "--length-penalty",
        env="PARAKEET_LENGTH_PENALTY",
        parse=parse_float,
        default=0.013,
        help="beam length penalty; 0 disables it",
        metavar="X",
        group=beam,
    )
    b.add(
        "--patience",
        env="PARAKEET_PATIENCE",
        parse=parse_float,
        default=3.5,
        help="beam patience; 1 disables it",
        metavar="X",
        group=beam,
    )
    b.add(
        "--duration-reward",
        env="PARAKEET_DURATION_REWARD",
        parse=parse_float,
        default=0.67,
        help="TDT beam: 0 to 1, above 0.5 favours duration over token probabilities",
        metavar="X",
        group=beam,
    )

    b.add(
        "--cache-dir",
        env="PARAKEET_CACHE_DIR",
        parse=Path,
        help="Hugging Face cache folder (default: huggingface-hub's)",
        metavar="DIR",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print progress, timings and each sentence, even when output is not a terminal",
    )
    parser.add_argument("--version", action="version", version=f"parakeet-tui {_version()}")
    return parser, b.env_options


# ------------------------------------------------------------------------ resolution


def _from_environment(namespace: argparse.Namespace, env_options: dict[str, _EnvOption]) -> None:
    """Fills options not given on the command line from their variable, else the default."""
    for dest, option in env_options.items():
        if getattr(namespace, dest) is not None:
            continue
        raw = os.environ.get(option.env, "")
        if raw.strip():  # click, too, treats an empty variable as unset
            try:
                value = option.parse(raw.strip())
            except ValueError as e:
                raise UsageError(f"environment variable {option.env}: {e}") from None
        else:
            value = option.default
        setattr(namespace, dest, value)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def _validate(ns: argparse.Namespace) -> None:
    _check(ns.chunk_duration >= 0, f"--chunk-duration must be >= 0, got {ns.chunk_duration:g}")
    _check(
        ns.overlap_duration >= 0, f"--overlap-duration must be >= 0, got {ns.overlap_duration:g}"
    )
    _check(
        ns.chunk_duration == 0 or ns.overlap_duration < ns.chunk_duration,
        f"--overlap-duration ({ns.overlap_duration:g} s) must be shorter than "
        f"--chunk-duration ({ns.chunk_duration:g} s)",
    )
    _check(
        ns.local_attention_context_size >= 1,
        f"--local-attention-context-size must be at least 1, got {ns.local_attention_context_size}",
    )
    _check(ns.max_words is None or ns.max_words >= 1, "--max-words must be at least 1")
    _check(ns.silence_gap is None or ns.silence_gap >= 0, "--silence-gap must be >= 0")
    _check(ns.max_duration is None or ns.max_duration > 0, "--max-duration must be > 0")
    _check(ns.beam_size >= 1, f"--beam-size must be at least 1, got {ns.beam_size}")
    _check(ns.length_penalty >= 0, "--length-penalty must be >= 0")
    _check(ns.patience >= 1, "--patience must be >= 1 (1 disables it)")
    _check(0 <= ns.duration_reward <= 1, "--duration-reward must be between 0 and 1")
    try:
        check_template(ns.output_template)
    except TemplateError as e:
        raise UsageError(f"--output-template: {e}") from None


def _demo_model() -> str:
    from .demo import DEMO_MODEL

    return str(DEMO_MODEL)


def parse_options(argv: Sequence[str]) -> TranscribeOptions:
    """The options in argv (and the environment). Raises UsageError for anything invalid;
    exits (SystemExit) for --help and --version, as argparse does."""
    parser, env_options = build_parser()
    ns = parser.parse_args(list(argv))
    _from_environment(ns, env_options)
    _validate(ns)
    fmt = ns.output_format
    return TranscribeOptions(
        files=list(ns.files),
        model=_demo_model() if ns.demo else ns.model,
        output_dir=ns.output_dir if ns.output_dir is not None else Path("."),
        formats=OUTPUT_FORMATS if fmt == "all" else (fmt,),
        output_template=ns.output_template,
        highlight_words=bool(ns.highlight_words),
        chunk_duration=ns.chunk_duration or None,
        overlap_duration=ns.overlap_duration,
        fp32=ns.fp32,
        max_words=ns.max_words,
        silence_gap=ns.silence_gap,
        max_duration=ns.max_duration,
        local_attention=ns.local_attention,
        local_attention_context_size=ns.local_attention_context_size,
        cache_dir=ns.cache_dir,
        verbose=ns.verbose,
        decoding=ns.decoding,
        beam={
            "beam_size": ns.beam_size,
            "length_penalty": ns.length_penalty,
            "patience": ns.patience,
            "duration_reward": ns.duration_reward,
        },
    )


def print_usage_error(message: str) -> None:
    print(f"error: {message} (see `{PROG} --help`)", file=sys.stderr)
