#!/usr/bin/env bash
# Download (not install) the Debian 12 amd64 packages of the synthetic corpus's TTS engines,
# voices, text and the libraries a bare CUDA image lacks, into .gpu/tts (git-ignored; carried
# to the GPU machine, unpacked there by tools/gpu/unpack_tts.sh). Run on the Debian dev box.
#
#   tools/gpu/fetch_tts_debs.sh [DIR]      (default .gpu/tts; ~34 MB)
#
# Left out on purpose (present on every Debian/Ubuntu image, and newer there): libc6,
# libstdc++6, libgcc-s1, libtinfo6. The list below is the closure of `ldd espeak-ng flite
# festival` minus those, plus the voice, lexicon and text packages (fortunes-min: every corpus
# size; fortunes, 0.85 MB: the extra train/dev text of the `large` size).
set -euo pipefail
dir=${1:-.gpu/tts}
engines="espeak-ng libespeak-ng1 espeak-ng-data libpcaudio0 libsonic0 flite libflite1
  festival libestools2.5 festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k
  festvox-us-slt-hts fortunes-min fortunes"
libs="libasound2 libasound2-data libpulse0 libasyncns0 libbsd0 libcap2 libdbus-1-3 libflac12
  libgcrypt20 libgpg-error0 liblz4-1 liblzma5 libmd0 libmp3lame0 libmpg123-0 libogg0 libopus0
  libsndfile1 libsystemd0 libvorbis0a libvorbisenc2 libx11-6 libx11-xcb1 libxau6 libxcb1
  libxdmcp6 libzstd1 libgomp1"
mkdir -p "$dir"
# shellcheck disable=SC2086
(cd "$dir" && apt-get -o APT::Architecture=amd64 download $engines $libs)
du -sh "$dir"
