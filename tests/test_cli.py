"""`parakeet-tui` and `parakeet-tui transcribe`: options, outputs and bad input.

The fixture models have random weights, so the tests check structure, timestamps and files,
and that the command writes exactly what the engine's own API gives."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import NEMO
from demo_model import DEMO_MODEL, DEMO_RECORDING, MAX_WER, demo_text, word_error_rate

import asr
import asr.export
from tui.app_options import AppUsageError, parse_app_args
from tui.cli import main
from tui.control_tokens import drop_control_tokens
from tui.transcribe_cli import BF16_ON_CPU
from tui.transcribe_console import Reporter
from tui.transcribe_options import UsageError, parse_options

MODELS = {name: NEMO / name / "mlx" for name in ("tdt", "rnnt", "ctc", "tdt-local")}
TDT = MODELS["tdt"]
AUDIO = NEMO / "audio"
SPEECH = [AUDIO / f"speech{i}.wav" for i in range(3)]
SRT_TIME = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
# A token's end is its frame plus its TDT duration (the fixtures' longest: 4 frames of 80 ms),
# so the last cue may end this far past the audio.
END_SLACK = 0.001  # cue times are rounded to milliseconds
ENV_VARS = [
    "PARAKEET_MODEL",
    "PARAKEET_OUTPUT_FORMAT",
    "PARAKEET_OUTPUT_TEMPLATE",
    "PARAKEET_CHUNK_DURATION",
    "PARAKEET_OVERLAP_DURATION",
    "PARAKEET_FP32",
    "PARAKEET_MAX_WORDS",
    "PARAKEET_SILENCE_GAP",
    "PARAKEET_MAX_DURATION",
    "PARAKEET_LOCAL_ATTENTION",
    "PARAKEET_LOCAL_ATTENTION_CTX",
    "PARAKEET_DECODING",
    "PARAKEET_BEAM_SIZE",
    "PARAKEET_LENGTH_PENALTY",
    "PARAKEET_PATIENCE",
    "PARAKEET_DURATION_REWARD",
    "PARAKEET_CACHE_DIR",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tdt_model():
    return asr.from_pretrained(str(TDT))


def transcribe(capsys, *args: object) -> tuple[int, str, str]:
    """Runs `parakeet-tui transcribe ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["transcribe", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def expected(model, path: Path, fmt: str = "srt", **kwargs) -> str:
    """What the engine's API gives for path, rendered as the command should write it."""
    result = drop_control_tokens(model.transcribe(str(path), **kwargs))
    return asr.export.render(result, fmt)


def srt_cues(text: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in filter(None, text.strip().split("\n\n")):
        number, times, *lines = block.split("\n")
        assert number.isdigit()
        start, end = (
            int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
            for h, m, s, ms in re.findall(SRT_TIME, times)
        )
        cues.append((start, end, "\n".join(lines)))
    return cues


def write_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    """speech0's words (or a part of them), resampled crudely to rate, in channels."""
    data, source_rate = sf.read(SPEECH[0], dtype="float32")
    n = int(round(seconds * rate))
    positions = np.arange(n) * source_rate / rate
    samples = np.interp(positions, np.arange(len(data)), data).astype(np.float32)
    if channels > 1:
        samples = np.stack([samples * (0.5 + 0.5 * c / channels) for c in range(channels)], 1)
    sf.write(path, samples, rate)
    return path


def files_in(folder: Path) -> list[str]:
    """Every file under folder, hidden temporary files included."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- good input


def test_srt_matches_the_engine(capsys, tmp_path, tdt_model):
    code, out, err = transcribe(capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path)
    assert (code, err) == (0, "")
    assert out == ""  # stdout is not a terminal: quiet
    assert files_in(tmp_path) == ["speech0.srt"]
    srt = (tmp_path / "speech0.srt").read_text()
    assert srt == expected(tdt_model, SPEECH[0])
    duration = sf.info(SPEECH[0]).duration
    cues = srt_cues(srt)
    for start, end, text in cues:
        assert 0 <= start <= end <= duration + END_SLACK
        assert text.strip()
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)


@pytest.mark.parametrize("family", ["rnnt", "ctc", "tdt-local"])
def test_every_family(capsys, tmp_path, family):
    model = asr.from_pretrained(str(MODELS[family]))
    code, _, err = transcribe(
        capsys, SPEECH[1], "--model", MODELS[family], "--output-dir", tmp_path
    )
    assert (code, err) == (0, "")
    assert (tmp_path / "speech1.srt").read_text() == expected(model, SPEECH[1])


def test_all_formats(capsys, tmp_path, tdt_model):
    code, _, err = transcribe(
        capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path, "--output-format", "all"
    )
    assert (code, err) == (0, "")
    assert files_in(tmp_path) == [f"speech0.{fmt}" for fmt in ("json", "srt", "txt", "vtt")]
    for fmt in asr.export.FORMATS:
        assert (tmp_path / f"speech0.{fmt}").read_text() == expected(tdt_model, SPEECH[0], fmt)
    data = json.loads((tmp_path / "speech0.json").read_text())
    assert set(data) == {"text", "sentences"}
    assert (tmp_path / "speech0.vtt").read_text().startswith("WEBVTT")


@pytest.mark.parametrize("fmt", ["txt", "vtt", "json"])
def test_one_format(capsys, tmp_path, fmt):
    code, _, _ = transcribe(
        capsys, SPEECH[2], "--model", TDT, "--output-dir", tmp_path, "--output-format", fmt
    )
    assert code == 0
    assert files_in(tmp_path) == [f"speech2.{fmt}"]


def test_highlight_words(capsys, tmp_path, tdt_model):
    code, _, _ = transcribe(
        capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path, "--highlight-words"
    )
    assert code == 0
    result = drop_control_tokens(tdt_model.transcribe(str(SPEECH[0])))
    srt = (tmp_path / "speech0.srt").read_text()
    assert srt == asr.export.render(result, "srt", highlight_words=True)
    if result.sentences:
        assert "<u>" in srt


def test_several_files_and_the_template(capsys, tmp_path):
    template = "{filename}_{index:03}_{date}"
    code, _, err = transcribe(
        capsys, *SPEECH, "--model", TDT, "--output-dir", tmp_path, "--output-template", template
    )
    assert (code, err) == (0, "")
    names = files_in(tmp_path)
    assert len(names) == 3
    for i, name in enumerate(names, 1):
        assert re.fullmatch(rf"speech{i - 1}_{i:03}_20\d{{6}}\.srt", name), name


def test_template_parent_and_subfolders(capsys, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    clip = shutil.copy(SPEECH[0], source / "talk.wav")
    out = tmp_path / "out"
    code, _, err = transcribe(
        capsys,
        clip,
        "--model",
        TDT,
        "--output-dir",
        out,
        "--output-template",
        "{parent}/{filename}.{index}",
    )
    assert (code, err) == (0, "")
    assert (source / "talk.1.srt").is_file()  # {parent} is absolute here: next to the input
    code, _, err = transcribe(
        capsys, clip, "--model", TDT, "--output-dir", out, "--output-template", "sub/{filename}"
    )
    assert (code, err) == (0, "")
    assert files_in(out) == ["sub/talk.srt"]


def test_same_name_from_two_folders_is_not_overwritten(capsys, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(SPEECH[int(folder == "b")], tmp_path / folder / "talk.wav")
    out = tmp_path / "out"
    code, _, err = transcribe(
        capsys,
        tmp_path / "a" / "talk.wav",
        tmp_path / "b" / "talk.wav",
        "--model",
        TDT,
        "--output-dir",
        out,
    )
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"error: {tmp_path / 'b' / 'talk.wav'}: ") and "{index}" in line
    assert files_in(out) == ["talk.srt"]


def test_chunking(capsys, tmp_path, tdt_model):
    args = ("--chunk-duration", "1.5", "--overlap-duration", "0.5")
    code, _, err = transcribe(capsys, SPEECH[2], "--model", TDT, "--output-dir", tmp_path, *args)
    assert (code, err) == (0, "")
    srt = (tmp_path / "speech2.srt").read_text()
    assert srt == expected(tdt_model, SPEECH[2], chunk_duration=1.5, overlap_duration=0.5)
    for start, end, _ in srt_cues(srt):
        assert 0 <= start <= end <= sf.info(SPEECH[2]).duration + END_SLACK


def test_chunking_disabled(capsys, tmp_path, tdt_model):
    code, _, _ = transcribe(
        capsys,
        SPEECH[2],
        "--model",
        TDT,
        "--output-dir",
        tmp_path,
        "--chunk-duration",
        "0",
        "--overlap-duration",
        "30",
    )
    assert code == 0
    assert (tmp_path / "speech2.srt").read_text() == expected(tdt_model, SPEECH[2])


def test_chunk_progress_reaches_the_end(tmp_path, monkeypatch):
    calls: list[tuple[int, int]] = []
    original = asr.BaseParakeet.transcribe

    def spy(self, path, **kwargs):
        callback = kwargs["chunk_callback"]

        def record(done: int, total: int) -> None:
            calls.append((done, total))
            callback(done, total)

        return original(self, path, **{**kwargs, "chunk_callback": record})

    monkeypatch.setattr(asr.BaseParakeet, "transcribe", spy)
    code = main(
        [
            "transcribe",
            str(SPEECH[2]),
            "--model",
            str(TDT),
            "--output-dir",
            str(tmp_path),
            "--chunk-duration",
            "1",
            "--overlap-duration",
            "0.25",
            "-v",
        ]
    )
    assert code == 0
    assert len(calls) > 3
    assert calls[-1][0] == calls[-1][1] == sf.info(SPEECH[2]).frames


def test_sentence_splitting(capsys, tmp_path, tdt_model):
    code, _, _ = transcribe(
        capsys,
        SPEECH[0],
        "--model",
        TDT,
        "--output-dir",
        tmp_path,
        "--max-words",
        "2",
        "--max-duration",
        "1.5",
        "--silence-gap",
        "0.3",
    )
    assert code == 0
    config = asr.DecodingConfig(
        sentence=asr.SentenceConfig(max_words=2, silence_gap=0.3, max_duration=1.5)
    )
    srt = (tmp_path / "speech0.srt").read_text()
    assert srt == expected(tdt_model, SPEECH[0], decoding_config=config)
    for _, _, text in srt_cues(srt):
        assert len(text.split()) <= 2


def test_local_attention_flags(capsys, tmp_path):
    model = asr.from_pretrained(str(TDT))
    model.encoder.set_attention_model("rel_pos_local_attn", (8, 8))
    code, _, err = transcribe(
        capsys,
        SPEECH[0],
        "--model",
        TDT,
        "--output-dir",
        tmp_path,
        "--local-attention",
        "--local-attention-context-size",
        "8",
    )
    assert (code, err) == (0, "")
    assert (tmp_path / "speech0.srt").read_text() == expected(model, SPEECH[0])

    # the tdt-local checkpoint has local attention in its config; --full-attention overrides
    local = asr.from_pretrained(str(MODELS["tdt-local"]))
    local.encoder.set_attention_model("rel_pos")
    code, _, err = transcribe(
        capsys,
        SPEECH[0],
        "--model",
        MODELS["tdt-local"],
        "--output-dir",
        tmp_path / "full",
        "--full-attention",
    )
    assert (code, err) == (0, "")
    assert (tmp_path / "full" / "speech0.srt").read_text() == expected(local, SPEECH[0])


@pytest.mark.parametrize("size", ["0", "-4"])
def test_local_attention_context_must_be_positive(capsys, tmp_path, size):
    code, out, err = transcribe(
        capsys,
        SPEECH[0],
        "--model",
        TDT,
        "--output-dir",
        tmp_path,
        "--local-attention",
        "--local-attention-context-size",
        size,
    )
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("error: --local-attention-context-size")
    assert files_in(tmp_path) == []


def test_precision_flags(capsys, tmp_path):
    import mlx.core as mx

    for flag in ("--fp32", "--bf16"):
        code, _, err = transcribe(
            capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path / flag.strip("-"), flag
        )
        assert code == 0
        if flag == "--bf16" and mx.default_device() == mx.cpu:  # slow there: the user is told
            assert error_lines(err) == [f"warning: {BF16_ON_CPU}"]
        else:
            assert err == ""
        assert (tmp_path / flag.strip("-") / "speech0.srt").is_file()


def test_resampled_and_stereo_input(capsys, tmp_path):
    low = write_wav(tmp_path / "low.wav", 3.0, rate=8000)
    high = write_wav(tmp_path / "high.wav", 3.0, rate=48000, channels=2)
    out = tmp_path / "out"
    code, _, err = transcribe(capsys, low, high, "--model", TDT, "--output-dir", out)
    assert (code, err) == (0, "")
    assert files_in(out) == ["high.srt", "low.srt"]
    for name in ("high.srt", "low.srt"):
        for start, end, _ in srt_cues((out / name).read_text()):
            assert 0 <= start <= end <= 3.0 + END_SLACK


def test_verbose_prints_sentences_and_paths(capsys, tmp_path, tdt_model):
    code, out, err = transcribe(capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path, "-v")
    assert (code, err) == (0, "")
    assert f"wrote {tmp_path / 'speech0.srt'}" in out
    for sentence in drop_control_tokens(tdt_model.transcribe(str(SPEECH[0]))).sentences:
        assert sentence.text.strip() in out
    assert "s of audio in" in out


def test_interactive_progress_and_summary(tmp_path):
    """On a terminal: a progress bar while a file runs, then one line per file written."""
    stdout, stderr = io.StringIO(), io.StringIO()
    reporter = Reporter(stdout=stdout, stderr=stderr, interactive=True)
    assert not reporter.quiet
    with reporter.progress():
        with reporter.track("[1/1] talk.wav") as progress:
            progress(10, 100)
            progress(100, 100)
        reporter.info(f"wrote {tmp_path / 'talk.srt'}")
        reporter.error("bad.wav: no such file")
    assert "talk.srt" in stdout.getvalue()
    assert stderr.getvalue() == "error: bad.wav: no such file\n"  # stderr is not a terminal
    quiet = Reporter(stdout=io.StringIO(), interactive=False)
    assert quiet.quiet


# ---------------------------------------------------------------------------- environment


def test_environment_variables(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PARAKEET_MODEL", str(TDT))
    monkeypatch.setenv("PARAKEET_OUTPUT_FORMAT", "vtt")
    monkeypatch.setenv("PARAKEET_OUTPUT_TEMPLATE", "{index}-{filename}")
    monkeypatch.setenv("PARAKEET_LOCAL_ATTENTION", "true")
    monkeypatch.setenv("PARAKEET_LOCAL_ATTENTION_CTX", "8")
    code, _, err = transcribe(capsys, SPEECH[0], "--output-dir", tmp_path)
    assert (code, err) == (0, "")
    assert files_in(tmp_path) == ["1-speech0.vtt"]
    model = asr.from_pretrained(str(TDT))
    model.encoder.set_attention_model("rel_pos_local_attn", (8, 8))
    assert (tmp_path / "1-speech0.vtt").read_text() == expected(model, SPEECH[0], "vtt")

    # the command line wins over the environment
    code, _, _ = transcribe(
        capsys,
        SPEECH[0],
        "--output-dir",
        tmp_path / "2",
        "--output-format",
        "txt",
        "--output-template",
        "{filename}",
    )
    assert code == 0
    assert files_in(tmp_path / "2") == ["speech0.txt"]


def test_environment_parsing(monkeypatch):
    monkeypatch.setenv("PARAKEET_CHUNK_DURATION", "0")
    monkeypatch.setenv("PARAKEET_OVERLAP_DURATION", "3")
    monkeypatch.setenv("PARAKEET_FP32", "yes")
    monkeypatch.setenv("PARAKEET_MAX_WORDS", "7")
    monkeypatch.setenv("PARAKEET_SILENCE_GAP", "0.5")
    monkeypatch.setenv("PARAKEET_MAX_DURATION", "4")
    monkeypatch.setenv("PARAKEET_DECODING", "beam")
    monkeypatch.setenv("PARAKEET_BEAM_SIZE", "3")
    monkeypatch.setenv("PARAKEET_LENGTH_PENALTY", "0")
    monkeypatch.setenv("PARAKEET_PATIENCE", "1")
    monkeypatch.setenv("PARAKEET_DURATION_REWARD", "0.5")
    monkeypatch.setenv("PARAKEET_CACHE_DIR", "/tmp/hf")
    monkeypatch.setenv("PARAKEET_LOCAL_ATTENTION", "")  # empty: unset, as click reads it
    o = parse_options(["a.wav"])
    assert o.chunk_duration is None and o.overlap_duration == 3 and o.fp32 is True
    assert (o.max_words, o.silence_gap, o.max_duration) == (7, 0.5, 4)
    assert o.decoding == "beam"
    assert o.beam == {"beam_size": 3, "length_penalty": 0, "patience": 1, "duration_reward": 0.5}
    assert o.cache_dir == Path("/tmp/hf") and o.local_attention is None
    assert parse_options(["a.wav", "--bf16"]).fp32 is False


def test_defaults_match_parakeet_mlx():
    o = parse_options(["a.wav"])
    assert o.model == "mlx-community/parakeet-tdt-0.6b-v3"
    assert (o.output_dir, o.formats, o.output_template) == (Path("."), ("srt",), "{filename}")
    assert (o.chunk_duration, o.overlap_duration) == (120, 15)
    assert o.local_attention_context_size == 256
    assert o.decoding == "greedy"
    assert o.beam == {
        "beam_size": 5,
        "length_penalty": 0.013,
        "patience": 3.5,
        "duration_reward": 0.67,
    }
    assert parse_options(["a.wav", "--output-format", "all"]).formats == asr.export.FORMATS


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("PARAKEET_CHUNK_DURATION", "abc"),
        ("PARAKEET_OUTPUT_FORMAT", "mp3"),
        ("PARAKEET_FP32", "maybe"),
        ("PARAKEET_LOCAL_ATTENTION_CTX", "0"),
        ("PARAKEET_BEAM_SIZE", "2.5"),
    ],
)
def test_bad_environment_values(capsys, monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    code, out, err = transcribe(capsys, SPEECH[0])
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("error: ") and ("PARAKEET" in line or "--local-attention" in line)


@pytest.mark.parametrize(
    "args",
    [
        ["--output-format", "mp3"],
        ["--chunk-duration", "10"],  # the default 15 s overlap would not fit
        ["--chunk-duration", "-1"],
        ["--overlap-duration", "-1"],
        ["--output-template", "{name}"],
        ["--output-template", "{0}"],
        ["--output-template", ""],
        ["--max-words", "0"],
        ["--max-duration", "0"],
        ["--beam-size", "0"],
        ["--fp32", "--bf16"],
        ["--local-attention", "--full-attention"],
        ["--chunk-duration", "nan"],
    ],
)
def test_bad_options(capsys, tmp_path, args):
    code, out, err = transcribe(capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path, *args)
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("error: ")
    assert files_in(tmp_path) == []
    with pytest.raises(UsageError):
        parse_options([str(SPEECH[0]), *args])


def test_beam_decoding(capsys, tmp_path, monkeypatch):
    if hasattr(asr, "Beam"):
        code, _, err = transcribe(
            capsys,
            SPEECH[0],
            "--model",
            TDT,
            "--output-dir",
            tmp_path,
            "--decoding",
            "beam",
            "--beam-size",
            "2",
        )
        assert (code, err) == (0, "")
        assert files_in(tmp_path) == ["speech0.srt"]
        monkeypatch.delattr(asr, "Beam")
    code, _, err = transcribe(
        capsys, SPEECH[0], "--model", TDT, "--output-dir", tmp_path / "none", "--decoding", "beam"
    )
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("error: --decoding beam")
    assert files_in(tmp_path / "none") == []


# ---------------------------------------------------------------------------- bad input


def bad_audio(tmp_path: Path) -> dict[str, Path]:
    """Each kind of unusable input file, by name."""
    folder = tmp_path / "bad"
    folder.mkdir()
    text = folder / "text.wav"
    text.write_text("this is not audio\n" * 50)
    whole = write_wav(folder / "whole.wav", 2.0)
    header_cut = folder / "header-cut.wav"
    header_cut.write_bytes(whole.read_bytes()[:30])
    empty = folder / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    short = folder / "short.wav"
    sf.write(short, np.zeros(160, dtype=np.float32), 16000)  # 10 ms
    zero_bytes = folder / "zero-bytes.wav"
    zero_bytes.write_bytes(b"")
    (folder / "a-folder.wav").mkdir()
    return {
        "missing": folder / "missing.wav",
        "directory": folder / "a-folder.wav",
        "text named .wav": text,
        "wav cut inside its header": header_cut,
        "zero-length wav": empty,
        "empty file": zero_bytes,
        "10 ms": short,
    }


BAD_KINDS = [
    "missing",
    "directory",
    "text named .wav",
    "wav cut inside its header",
    "zero-length wav",
    "empty file",
    "10 ms",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_audio_gives_one_line(capsys, tmp_path, kind):
    path = bad_audio(tmp_path)[kind]
    out_dir = tmp_path / "out"
    code, out, err = transcribe(capsys, path, "--model", TDT, "--output-dir", out_dir)
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"error: {path}: "), line
    assert len(line) > len(f"error: {path}: ") + 3
    assert "Traceback" not in err
    assert files_in(out_dir) == []


def test_wav_cut_in_half(capsys, tmp_path):
    """A WAV whose data stops before its header says is refused in one line that says so
    (a transcript of half a recording must not pass for the whole), never a traceback."""
    whole = write_wav(tmp_path / "whole.wav", 3.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    code, _, err = transcribe(capsys, cut, "--model", TDT, "--output-dir", tmp_path / "out")
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"error: {cut}: ") and "truncated WAV" in line
    assert files_in(tmp_path / "out") == []


def test_one_bad_file_does_not_stop_the_others(capsys, tmp_path):
    bad = bad_audio(tmp_path)
    inputs = [SPEECH[0], bad["text named .wav"], SPEECH[1], bad["missing"], SPEECH[2]]
    out_dir = tmp_path / "out"
    code, out, err = transcribe(capsys, *inputs, "--model", TDT, "--output-dir", out_dir, "-v")
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {bad['text named .wav']}: ")
    assert lines[1].startswith(f"error: {bad['missing']}: ")
    assert files_in(out_dir) == ["speech0.srt", "speech1.srt", "speech2.srt"]
    assert "3 of 5 files transcribed, 2 failed" in out


def make_model(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(TDT, folder)
    return folder


def broken_models(tmp_path: Path) -> dict[str, Path]:
    no_config = make_model(tmp_path, "no-config")
    (no_config / "config.json").unlink()
    unknown = make_model(tmp_path, "unknown-family")
    config = json.loads((unknown / "config.json").read_text())
    config["target"] = "nemo.collections.asr.models.SomethingElse"
    (unknown / "config.json").write_text(json.dumps(config))
    corrupted = make_model(tmp_path, "corrupted")
    rng = np.random.default_rng(0)
    (corrupted / "model.safetensors").write_bytes(rng.bytes(4096))
    misfit = make_model(tmp_path, "misfit")
    config = json.loads((misfit / "config.json").read_text())
    config["encoder"]["n_layers"] += 1
    (misfit / "config.json").write_text(json.dumps(config))
    bad_json = make_model(tmp_path, "bad-json")
    (bad_json / "config.json").write_text("{not json")
    return {
        "no config.json": no_config,
        "unknown family": unknown,
        "corrupted safetensors": corrupted,
        "weights that do not fit": misfit,
        "config not JSON": bad_json,
        "missing folder": tmp_path / "nowhere" / "model",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "no config.json",
        "unknown family",
        "corrupted safetensors",
        "weights that do not fit",
        "config not JSON",
        "missing folder",
    ],
)
def test_bad_model_is_reported_once_before_any_file(capsys, tmp_path, kind):
    model = broken_models(tmp_path)[kind]
    out_dir = tmp_path / "out"
    code, out, err = transcribe(
        capsys, *SPEECH, "missing.wav", "--model", model, "--output-dir", out_dir
    )
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith("error: ") and "Traceback" not in err
    assert "speech0" not in line and "missing.wav" not in line
    assert files_in(out_dir) == []


def test_model_not_in_the_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = transcribe(
        capsys,
        SPEECH[0],
        "--model",
        "mlx-community/not-a-model",
        "--cache-dir",
        tmp_path / "hf",
        "--output-dir",
        tmp_path,
    )
    assert code == 1
    [line] = error_lines(err)
    assert "mlx-community/not-a-model" in line and "cache" in line


def test_unwritable_output_dir(capsys, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    for out_dir in (blocker / "sub", blocker):
        code, out, err = transcribe(capsys, SPEECH[0], "--model", TDT, "--output-dir", out_dir)
        assert code == 1
        [line] = error_lines(err)
        assert line.startswith(f"error: {out_dir}: ")
    assert files_in(tmp_path) == ["file.txt"]


def test_unwritable_output_file(capsys, tmp_path):
    """The folder is fine but the template leads through a file: that input fails alone."""
    (tmp_path / "taken").write_text("a file")
    code, _, err = transcribe(
        capsys,
        SPEECH[0],
        "--model",
        TDT,
        "--output-dir",
        tmp_path,
        "--output-template",
        "taken/{filename}",
    )
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"error: {SPEECH[0]}: ")
    assert files_in(tmp_path) == ["taken"]


def test_ctrl_c(capsys, tmp_path, monkeypatch):
    def interrupted(self, path, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(asr.BaseParakeet, "transcribe", interrupted)
    code, _, err = transcribe(capsys, *SPEECH, "--model", TDT, "--output-dir", tmp_path)
    assert code == 130
    assert error_lines(err) == ["interrupted"]
    assert files_in(tmp_path) == []


def test_control_tokens_are_dropped():
    def token(text: str, start: float) -> asr.AlignedToken:
        return asr.AlignedToken(id=0, text=text, start=start, duration=0.1)

    tokens = [token(" hello", 0.0), token("<unk>", 0.1), token(" world", 0.2)]
    marker_only = [token("<|endoftext|>", 1.0), token("<pad>", 1.1)]
    result = asr.AlignedResult(
        text="",
        sentences=[
            asr.AlignedSentence(text="".join(t.text for t in tokens), tokens=tokens),
            asr.AlignedSentence(text="", tokens=marker_only),
        ],
    )
    clean = drop_control_tokens(result)
    assert clean.text == "hello world"
    assert len(clean.sentences) == 1
    assert [t.text for t in clean.tokens] == [" hello", " world"]
    assert "<" not in asr.export.render(clean, "srt")


# ---------------------------------------------------------------------------- the demo


def test_transcribe_with_the_demo_model_writes_the_recordings_words(capsys, tmp_path):
    code, out, err = transcribe(
        capsys,
        DEMO_RECORDING,
        "--demo",
        "--output-format",
        "srt",
        "--output-dir",
        tmp_path,
    )
    assert (code, err) == (0, "")
    assert files_in(tmp_path) == ["recording.srt"]
    cues = srt_cues((tmp_path / "recording.srt").read_text())
    text = " ".join(cue[2] for cue in cues)
    assert word_error_rate(demo_text(), text) <= MAX_WER, text
    duration = sf.info(DEMO_RECORDING).duration
    assert all(0 <= start <= end <= duration + END_SLACK for start, end, _ in cues)
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)


def test_demo_flag_in_both_parsers():
    assert parse_options(["x.wav", "--demo"]).model == str(DEMO_MODEL)
    assert parse_options(["x.wav"]).model != str(DEMO_MODEL)
    options = parse_app_args(["--demo"])
    assert (options.model, options.recording) == (str(DEMO_MODEL), DEMO_RECORDING)
    other = SPEECH[0]
    options = parse_app_args(["--demo", str(other)])  # the demo model on another file
    assert (options.model, options.recording) == (str(DEMO_MODEL), other)
    with pytest.raises(AppUsageError, match="no such file"):
        parse_app_args(["--demo", "missing.wav"])
    assert parse_app_args([]).model != str(DEMO_MODEL)


# ---------------------------------------------------------------------------- the command


def test_no_arguments_points_to_transcribe(capsys):
    pytest.importorskip("tui.cli")
    try:
        import tui.app  # noqa: F401
    except ModuleNotFoundError:
        code = main([])
        _, err = capsys.readouterr()
        assert code == 2
        [line] = error_lines(err)
        assert "parakeet-tui transcribe --help" in line
    else:
        pytest.skip("the app exists")


def test_help_and_version(capsys):
    assert main(["transcribe", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--model",
        "--output-template",
        "--chunk-duration",
        "--local-attention",
        "PARAKEET_MODEL",
        "--beam-size",
        "--duration-reward",
    ):
        assert flag in out
    assert main(["transcribe", "--version"]) == 0
    assert capsys.readouterr().out.startswith("parakeet-tui ")


def _console_script() -> str:
    script = shutil.which("parakeet-tui") or str(Path(sys.executable).parent / "parakeet-tui")
    if not os.path.exists(script):
        pytest.skip("the parakeet-tui entry point is not installed")
    return script


def test_installed_entry_point(tmp_path):
    script = _console_script()
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run(
        [
            script,
            "transcribe",
            str(SPEECH[0]),
            str(bad),
            "--model",
            str(TDT),
            "--output-dir",
            str(tmp_path / "out"),
            "--output-format",
            "all",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"error: {bad}: ")
    assert proc.stdout == ""  # not a terminal
    assert files_in(tmp_path / "out") == [f"speech0.{f}" for f in ("json", "srt", "txt", "vtt")]


def test_ctrl_c_in_the_installed_command(tmp_path):
    """A real SIGINT in the middle of a file: one line, exit 130, nothing written."""
    script = _console_script()
    data, rate = sf.read(SPEECH[0], dtype="float32")
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(data, 30), rate)  # two minutes: 24 chunks of 5 s
    out_dir = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.Popen(
        [
            script,
            "transcribe",
            str(long),
            "--model",
            str(TDT),
            "--output-dir",
            str(out_dir),
            "--chunk-duration",
            "5",
            "--overlap-duration",
            "1",
            "--verbose",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a shell without job control starts background jobs with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(f"{long}: "):  # a chunk is done: mid-file now
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert error_lines(err) == ["interrupted"]
    assert files_in(out_dir) == []
