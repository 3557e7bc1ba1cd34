"""Synthetic English speech from espeak-ng: voices, speeds and pitches split into those used
for training and those held out for testing, random sentences from a word list, light noise,
and the engine's own features (asr.audio), so that training sees exactly what inference sees.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORDS_FILE = Path(__file__).with_name("words.txt")
SAMPLE_RATE = 16000

LANGUAGES = (
    "en",
    "en-us",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
TRAINING_VARIANTS = (
    "",
    "m1", "m2", "m4", "m5", "m6", "m7", "m8",
    "f1", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt4", "klatt5", "klatt6",
    "Alex", "Alicia", "Andrea", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2",
    "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen",
    "RicishayMax", "Storm", "Tweaky", "adam", "anika", "announcer", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward2", "grandma",
    "grandpa", "gustave", "iven", "iven3", "iven4", "john", "kaukovalta", "marcelo", "max",
    "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "sandro", "shelby", "steph", "steph3", "travis", "victor", "zac",
)  # fmt: skip
HELD_OUT_VARIANTS = ("m3", "f2", "klatt3", "edward", "linda", "iven2", "steph2", "Andy")
TRAINING_SPEEDS = tuple(range(125, 231, 10))  # words per minute
HELD_OUT_SPEEDS = (140, 160, 180, 200)
TRAINING_PITCHES = tuple(range(20, 81, 10))
HELD_OUT_PITCHES = (35, 55, 75)


@dataclass(frozen=True)
class Voice:
    language: str
    variant: str
    speed: int
    pitch: int

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


def random_voice(rng: np.random.Generator, held_out: bool) -> Voice:
    variants = HELD_OUT_VARIANTS if held_out else TRAINING_VARIANTS
    speeds = HELD_OUT_SPEEDS if held_out else TRAINING_SPEEDS
    pitches = HELD_OUT_PITCHES if held_out else TRAINING_PITCHES
    return Voice(
        language=str(rng.choice(LANGUAGES)),
        variant=str(rng.choice(variants)),
        speed=int(rng.choice(speeds)),
        pitch=int(rng.choice(pitches)),
    )


def load_words() -> list[str]:
    return WORDS_FILE.read_text().split()


class SentenceMaker:
    """Random sentences: half the words drawn by frequency (Zipf), half uniformly, so that
    rare words are heard often enough to be learned."""

    def __init__(self, words: list[str]):
        self.words = words
        ranks = np.arange(1, len(words) + 1)
        zipf = 1.0 / ranks
        self.zipf = zipf / zipf.sum()

    def word(self, rng: np.random.Generator) -> str:
        if rng.random() < 0.5:
            return self.words[int(rng.integers(len(self.words)))]
        return self.words[int(rng.choice(len(self.words), p=self.zipf))]

    def sentence(self, rng: np.random.Generator, min_words: int = 3, max_words: int = 14) -> str:
        count = int(rng.integers(min_words, max_words + 1))
        words = [self.word(rng) for _ in range(count)]
        if count >= 6 and rng.random() < 0.4:
            at = int(rng.integers(2, count - 2))
            words[at] += ","
        words[0] = words[0][0].upper() + words[0][1:]
        words[-1] += "?" if rng.random() < 0.2 else "."
        return " ".join(words)

    def text(self, rng: np.random.Generator, max_sentences: int = 3) -> str:
        return " ".join(self.sentence(rng) for _ in range(int(rng.integers(1, max_sentences + 1))))


def espeak_environment() -> dict[str, str]:
    """Uses a bundle made by train/espeak_bundle.sh when ESPEAK_BUNDLE names one."""
    env = dict(os.environ)
    bundle = env.get("ESPEAK_BUNDLE")
    if bundle:
        env["ESPEAK_DATA_PATH"] = bundle
        env["LD_LIBRARY_PATH"] = f"{bundle}/lib:" + env.get("LD_LIBRARY_PATH", "")
    return env


def espeak_command() -> str:
    bundle = os.environ.get("ESPEAK_BUNDLE")
    return f"{bundle}/bin/espeak-ng" if bundle else "espeak-ng"


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Mono float32 at 16 kHz, read back through the engine's own audio loader."""
    from asr.audio import load_audio

    with tempfile.NamedTemporaryFile(suffix=".wav", dir=_scratch_dir()) as wav:
        subprocess.run(
            [
                espeak_command(),
                "-v", voice.name,
                "-s", str(voice.speed),
                "-p", str(voice.pitch),
                "-w", wav.name,
                text.lower(),
            ],
            check=True,
            env=espeak_environment(),
            capture_output=True,
        )  # fmt: skip
        return np.asarray(load_audio(wav.name, SAMPLE_RATE), dtype=np.float32)


def _scratch_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def add_noise(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random level, a little silence around the speech and, mostly, white noise 15 to
    45 dB below it."""
    gain = 10 ** (rng.uniform(-18, 0) / 20)
    lead, tail = (int(rng.uniform(0, 0.4) * SAMPLE_RATE) for _ in range(2))
    out = np.concatenate([np.zeros(lead), audio * gain, np.zeros(tail)]).astype(np.float32)
    if rng.random() < 0.8:
        power = np.mean(np.square(audio * gain)) + 1e-12
        snr = rng.uniform(15, 45)
        noise = rng.standard_normal(out.size) * np.sqrt(power / 10 ** (snr / 10))
        out += noise.astype(np.float32)
    return np.clip(out, -1.0, 1.0)


def features(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) normalized log-mel, exactly as the engine computes it."""
    import mlx.core as mx

    from asr.audio import get_logmel
    from asr.config import PreprocessArgs

    mx.set_default_device(mx.cpu)
    return np.asarray(get_logmel(audio, PreprocessArgs())[0])


@dataclass
class Example:
    features: np.ndarray  # (frames, 80) float16
    tokens: np.ndarray  # int16
    text: str


def make_example(seed: int, held_out: bool = False, noisy: bool = True) -> Example:
    from train.vocabulary import encode

    rng = np.random.default_rng(seed)
    maker = SentenceMaker(_words())
    text = maker.text(rng)
    audio = synthesize(text, random_voice(rng, held_out))
    if noisy:
        audio = add_noise(audio, rng)
    return Example(
        features=features(audio).astype(np.float16),
        tokens=np.asarray(encode(text), dtype=np.int16),
        text=text,
    )


_WORDS: list[str] | None = None


def _words() -> list[str]:
    global _WORDS
    if _WORDS is None:
        _WORDS = load_words()
    return _WORDS


def held_out_clips(seeds) -> list[tuple[str, np.ndarray]]:
    """(text, clean 16 kHz audio) in held-out voices, speeds and pitches, one per seed."""
    maker = SentenceMaker(load_words())
    clips = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        text = maker.text(rng)
        clips.append((text, synthesize(text, random_voice(rng, held_out=True))))
    return clips
