#!/usr/bin/env bash
# Rebuilds tests/fixtures/nemo_unseen from nothing: speech clips (espeak-ng + sox), tiny
# random NeMo models, their mlx-community conversions and NeMo's reference outputs.
#
#   NEMO_PY=/tmp/nemo-venv/bin/python tools/nemo_reference/build.sh [WORKDIR]
#
# NEMO_PY is a Python with nemo-toolkit[asr] (see README.md). WORKDIR (default
# /tmp/nemo-unseen) keeps the .nemo files, which are not committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${NEMO_PY:-/tmp/nemo-venv/bin/python}"
work="${1:-/tmp/nemo-unseen}"
dest="$repo/tests/fixtures/nemo_unseen"
mkdir -p "$work/raw" "$dest/audio"

# --- speech: voices, rates and sentences that tests/fixtures/nemo/audio does not use -----
espeak-ng -v en-us+f3 -s 150 -w "$work/raw/harbor.wav" \
  "Seven boats left the harbor before sunrise, and the fishermen counted their nets twice."
espeak-ng -v en-gb-scotland+m4 -s 190 -p 35 -w "$work/raw/budget.wav" \
  "Please forward the quarterly budget to Margaret by Thursday afternoon."
espeak-ng -v en-gb-x-rp+f2 -s 155 -w "$work/raw/museum.wav" \
  "Our museum opened a new exhibit about volcanoes last spring. Visitors can walk through a \
model of a lava tube, touch samples of basalt and pumice, and watch a short film about the \
eruption that buried the ancient city. The guide told us that some volcanoes sleep for \
thousands of years before they wake again."
espeak-ng -v en-029+m2 -s 130 -a 140 -w "$work/raw/library.wav" \
  "The reading room stays open until midnight."
# 16 kHz mono 16-bit, cut to sample counts that give mel frame counts of 594 (2 mod 4),
# 360 (0 mod 8) and 1988 (4 mod 8); the fixtures' clips all have odd counts.
sox -D "$work/raw/harbor.wav" -b 16 "$dest/audio/harbor.wav" vol 0.8 rate 16000 channels 1 \
  pad 0 1 trim 0 95040s
sox -D "$work/raw/budget.wav" -b 16 "$dest/audio/budget.wav" vol 0.8 rate 16000 channels 1 \
  pad 0 1 trim 0 57600s
sox -D "$work/raw/museum.wav" -b 16 "$dest/audio/museum.wav" vol 0.8 rate 16000 channels 1 \
  pad 0 1 trim 0 318177s
# 44.1 kHz stereo FLAC (the right channel quieter and 0.25 ms late): the engine must mix it
# down and resample it; NeMo's reference is computed on NeMo's own 16 kHz mono version.
sox -D "$work/raw/library.wav" -b 16 "$dest/audio/library_44k_stereo.flac" vol 0.8 \
  rate 44100 remix 1 1v0.6 delay 0 0.00025 trim 0 147000s

# --- models, conversions, references ----------------------------------------------------
"$py" "$here/make_models.py" "$work/models" "$dest/audio/harbor.wav"
declare -A dtype=([tdt-128]=bfloat16 [rnnt-local-asym]=bfloat16 [ctc-allfeat]=float32)
for name in tdt-128 rnnt-local-asym ctc-allfeat; do
  "$py" "$here/convert.py" "$work/models/$name.nemo" "$dest/$name/mlx" --dtype "${dtype[$name]}"
  "$py" "$here/reference.py" "$work/models/$name.nemo" "$dest/$name/reference" \
    "$dest/audio/harbor.wav" "$dest/audio/budget.wav" "$dest/audio/museum.wav" \
    "$dest/audio/library_44k_stereo.flac"
done
du -sh "$dest"
