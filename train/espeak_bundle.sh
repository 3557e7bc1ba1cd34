#!/usr/bin/env bash
# Packs this machine's espeak-ng (English data only) into a folder that runs on a machine
# without it: the GPU machine has no package registry. libpcaudio (sound output, which pulls
# in PulseAudio and ALSA) is replaced by a stub: the generator only writes WAV to stdout.
set -euo pipefail
out=${1:-.espeak}
data=$(espeak-ng --version | sed -n 's/.*Data at: //p')
lib=$(dirname "$(ldconfig -p | awk '/libespeak-ng.so.1 /{print $NF; exit}')")
rm -rf "$out" && mkdir -p "$out/bin" "$out/lib" "$out/espeak-ng-data/lang"
cp "$(command -v espeak-ng)" "$out/bin/"
cp -L "$lib/libespeak-ng.so.1" "$lib/libsonic.so.0" "$out/lib/"
cat > "$out/pcaudio_stub.c" <<'C'
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *n) { return NULL; }
int audio_object_open(struct audio_object *o, int f, unsigned r, unsigned char c) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *d, size_t b) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int e) { return "no audio output"; }
C
cc -shared -fPIC -o "$out/lib/libpcaudio.so.0" "$out/pcaudio_stub.c"
cp -r "$data"/{phondata,phonindex,phontab,intonations,en_dict,voices} "$out/espeak-ng-data/"
mkdir -p "$out/espeak-ng-data/lang/gmw"
cp "$data"/lang/gmw/en* "$out/espeak-ng-data/lang/gmw/"
du -sh "$out"
