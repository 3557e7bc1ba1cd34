"""`parakeet-tui transcribe`: audio files in, transcripts out, without the interactive app.

Every failure is one line on stderr ("error: <what>: <why>") and a non-zero exit status: 2
for unusable options, 1 when the model or any file failed, 130 on Ctrl-C. A file that fails
does not stop the others, and transcripts are written atomically, so none is ever partial.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryFile
from types import ModuleType
from typing import Any

from .transcribe_console import Reporter
from .transcribe_options import TranscribeOptions, UsageError, parse_options, print_usage_error
from .transcribe_paths import TemplateError, WrittenPaths, output_paths

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# measured on Linux x86-64: a 750 x 1024 by 1024 x 4096 product, 21 ms in float32, 927 ms in
# bfloat16 (MLX's CPU backend has no fast bfloat16 path)
BF16_ON_CPU = (
    "bfloat16 is about 40 times slower than float32 on MLX's CPU backend; leave out --bf16 "
    "for speed"
)


def run(argv: Sequence[str]) -> int:
    """Runs the command with argv (the arguments after `transcribe`); returns the exit code."""
    try:
        options = parse_options(argv)
    except UsageError as e:
        print_usage_error(str(e))
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version, which argparse has printed
        return e.code if isinstance(e.code, int) else 0
    reporter = Reporter(options.verbose)
    try:
        return _Run(options, reporter).all_files()
    except UsageError as e:
        print_usage_error(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout went away (`| head`): stop quietly, and keep Python's exit-time flush from
        # complaining about it
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def reason(error: BaseException, file: str) -> str:
    """error's message without the file name it may already start with."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename and os.fspath(error.filename) != file:
            text += f": {os.fspath(error.filename)}"
    else:
        text = one_line(str(error)) or type(error).__name__
    for name in {file, os.fspath(Path(file))}:
        text = text.removeprefix(f"{name}: ")
    return text


class _Run:
    """One invocation: the model, loaded once, then each file in turn."""

    def __init__(self, options: TranscribeOptions, reporter: Reporter) -> None:
        self.options = options
        self.reporter = reporter
        self.written = WrittenPaths()
        self.date = datetime.now().strftime("%Y%m%d")  # once, so a run past midnight agrees

    def all_files(self) -> int:
        asr = self._import_engine()
        if asr is None:
            return EXIT_FAILED
        self.decoding_config = self._decoding_config(asr)
        if not self._prepare_output_dir():
            return EXIT_FAILED
        self.model = self._load_model(asr)
        if self.model is None:
            return EXIT_FAILED
        files = self.options.files
        failed = 0
        with self.reporter.progress():
            for index, file in enumerate(files, 1):
                failed += not self._one_file(asr, file, index)
        if len(files) > 1:
            summary = f"{len(files) - failed} of {len(files)} files transcribed"
            self.reporter.info(summary + (f", {failed} failed" if failed else ""))
        return EXIT_FAILED if failed else 0

    # -------------------------------------------------------------------- set-up

    def _import_engine(self) -> ModuleType | None:
        try:
            import asr
            import asr.export

            from .control_tokens import drop_control_tokens
        except ImportError as e:
            self.reporter.error(f"cannot load the engine: {one_line(str(e))}")
            return None
        self.drop_control_tokens = drop_control_tokens
        return asr

    def _decoding_config(self, asr: ModuleType) -> Any:
        o = self.options
        try:
            sentence = asr.SentenceConfig(
                max_words=o.max_words, silence_gap=o.silence_gap, max_duration=o.max_duration
            )
        except ValueError as e:
            raise UsageError(str(e)) from None
        if o.decoding != "beam":
            return asr.DecodingConfig(sentence=sentence)
        beam = getattr(asr, "Beam", None)
        if beam is None:
            raise UsageError("--decoding beam: this version of the engine has no beam search")
        try:
            strategy = beam(**o.beam)
        except (TypeError, ValueError) as e:
            raise UsageError(f"--decoding beam: {one_line(str(e))}") from None
        return asr.DecodingConfig(decoding=strategy, sentence=sentence)

    def _prepare_output_dir(self) -> bool:
        folder = self.options.output_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = "not a folder" if folder.exists() else (e.strerror or str(e))
            self.reporter.error(f"{folder}: cannot use it as the output folder ({why})")
            return False
        try:  # a real write, since permission bits tell nothing when running as root
            with TemporaryFile(dir=folder):
                pass
        except OSError as e:
            self.reporter.error(f"{folder}: cannot write to the output folder ({e.strerror})")
            return False
        return True

    def _load_model(self, asr: ModuleType) -> Any:
        import mlx.core as mx

        o = self.options
        dtype = None if o.fp32 is None else (mx.float32 if o.fp32 else mx.bfloat16)
        try:
            with self.reporter.status(f"loading {o.model}"):
                model = asr.from_pretrained(o.model, dtype=dtype, cache_dir=o.cache_dir)
        except asr.ModelError as e:
            self.reporter.error(one_line(str(e)))
            return None
        except Exception as e:  # still one line: a broken model must not give a traceback
            self.reporter.error(f"{o.model}: cannot load the model ({type(e).__name__}: {e})")
            return None
        try:
            if o.local_attention:
                size = o.local_attention_context_size
                model.encoder.set_attention_model("rel_pos_local_attn", (size, size))
            elif o.local_attention is False:
                model.encoder.set_attention_model("rel_pos")
        except ValueError as e:
            raise UsageError(f"--local-attention-context-size: {one_line(str(e))}") from None
        if o.fp32 is False and mx.default_device() == mx.cpu:
            self.reporter.warning(BF16_ON_CPU)
        dtype_name = str(model.dtype).rsplit(".", 1)[-1]
        self.reporter.detail(f"model {o.model} loaded ({dtype_name})")
        return model

    # -------------------------------------------------------------------- each file

    def _one_file(self, asr: ModuleType, file: str, index: int) -> bool:
        """Transcribes file and writes its outputs; False (reported) when it failed."""
        o, reporter = self.options, self.reporter
        try:
            paths = output_paths(o.output_template, o.output_dir, file, index, self.date, o.formats)
        except TemplateError as e:
            reporter.error(f"{file}: --output-template: {e}")
            return False
        clash = self.written.owner(paths)
        if clash is not None:
            reporter.error(
                f"{file}: {clash[0]} was already written for {clash[1]} "
                "(add {index} or {parent} to --output-template)"
            )
            return False

        count = len(o.files)
        label = f"[{index}/{count}] {file}" if count > 1 else file
        reporter.detail(f"transcribing {label}")
        started = time.perf_counter()
        samples = [0]

        try:
            with reporter.track(label) as progress:

                def on_chunk(done: int, total: int) -> None:
                    samples[0] = total
                    progress(done, total)

                result = self.model.transcribe(
                    file,
                    decoding_config=self.decoding_config,
                    chunk_duration=o.chunk_duration,
                    overlap_duration=o.overlap_duration,
                    chunk_callback=on_chunk,
                )
        except (ValueError, OSError) as e:  # asr.audio.AudioError is a ValueError
            reporter.error(f"{file}: {reason(e, file)}")
            return False
        except Exception as e:  # unexpected, and still one line (--verbose adds the trace)
            reporter.error(f"{file}: {type(e).__name__}: {reason(e, file)}")
            if o.verbose:
                traceback.print_exc(file=reporter.err)
            return False

        result = self.drop_control_tokens(result)
        elapsed = time.perf_counter() - started
        self._describe(result, samples[0], elapsed)
        for path, fmt in zip(paths, o.formats, strict=True):
            if not self._write(asr, result, path, fmt, file):
                return False
        return True

    def _describe(self, result: Any, samples: int, elapsed: float) -> None:
        if not self.reporter.verbose:
            return
        from asr.export import format_timestamp

        for sentence in result.sentences:
            span = f"{format_timestamp(sentence.start)} --> {format_timestamp(sentence.end)}"
            self.reporter.detail(f"[{span}] {sentence.text.strip()}")
        seconds = samples / self.model.preprocessor_config.sample_rate
        speed = f", {seconds / elapsed:.1f}x real time" if elapsed > 0 and seconds else ""
        self.reporter.detail(f"{seconds:.1f} s of audio in {elapsed:.1f} s{speed}")

    def _write(self, asr: ModuleType, result: Any, path: Path, fmt: str, file: str) -> bool:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.reporter.error(f"{file}: cannot create folder {path.parent} ({e.strerror})")
            return False
        try:
            asr.export.write_result(result, path, fmt, self.options.highlight_words)
        except OSError as e:
            self.reporter.error(f"{file}: {reason(e, file)}")
            return False
        self.written.add(path, file)
        self.reporter.info(f"wrote {path}")
        return True
