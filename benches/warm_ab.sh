#!/usr/bin/env bash
# Interleaved warm A/B of whole `seed run` jobs: two (or more) `seed`
# binaries alternate, each round followed by a `cp -r` + `sync` of the same
# container files, on a source tier already in the page cache. On a noisy
# shared machine this compares binaries within minutes of each other.
#
#   benches/warm_ab.sh SRC_TIER WORK_DIR ROUNDS SEED_A SEED_B [...]
#
# SRC_TIER is a directory tier (e.g. `seed ingest --tier SRC --compression 0
# FILES`); WORK_DIR receives the targets, state and copies, and is emptied.
set -euo pipefail
src=$1 work=$2 rounds=$3
shift 3
mkdir -p "$work"
cat "$src"/containers/* > /dev/null
secs() { local s e; s=$(date +%s.%N); "$@" > /dev/null; sync; e=$(date +%s.%N); echo "$e - $s" | bc; }
for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    rm -rf "$work/dst" "$work/state"; sync
    echo "$bin round $round: $(secs "$bin" run --from "$src" --to "$work/dst" --state "$work/state" --all) s"
  done
  rm -rf "$work/cp"; sync
  echo "cp -r round $round: $(secs cp -r "$src/containers" "$work/cp") s"
done
rm -rf "$work/dst" "$work/state" "$work/cp"
