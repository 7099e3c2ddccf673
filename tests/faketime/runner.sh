#!/usr/bin/env bash
# Cargo target runner for sweep.sh: the test binary, and the larder servers it spawns, read
# the wall clock from libfaketime, starting at $FAKE_AT. cargo (the test kit builds the
# binaries), redis-server and redis-cli keep the real clock (nofake/ wrappers first in PATH).
here="$(cd "$(dirname "$0")" && pwd)"
export CARGO="$here/nofake/cargo"
export PATH="$here/nofake:$PATH"
export FAKETIME_DONT_FAKE_MONOTONIC=1
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
export FAKETIME="@$FAKE_AT"
exec "$@"
