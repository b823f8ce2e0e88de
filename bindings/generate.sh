#!/usr/bin/env bash
# Generate the Kotlin, Swift and Python bindings from the `baton-ffi` library.
#
#   bindings/generate.sh [OUT_DIR] [--release]
#
# Builds `libbaton_ffi` for this machine, then runs the `uniffi-bindgen` binary (its own crate,
# so the library carries no generator) in library mode. Writes OUT_DIR/kotlin, OUT_DIR/swift and
# OUT_DIR/python (default OUT_DIR: target/bindings), and copies the library into OUT_DIR/python
# so that `PYTHONPATH=OUT_DIR/python:bindings/python python3 -c 'import baton'` works.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/bindings}"
profile=debug
cargo_profile=()
if [ "${2:-}" = "--release" ]; then
  profile=release
  cargo_profile=(--release)
fi

cargo build "${cargo_profile[@]}" -p baton-ffi -p uniffi-bindgen
case "$(uname -s)" in
  Darwin) library="target/$profile/libbaton_ffi.dylib" ;;
  *) library="target/$profile/libbaton_ffi.so" ;;
esac

for language in kotlin swift python; do
  mkdir -p "$out/$language"
  "target/$profile/uniffi-bindgen" generate --library "$library" --language "$language" \
    --metadata-no-deps --out-dir "$out/$language"
done
cp "$library" "$out/python/"
echo "bindings in $out/{kotlin,swift,python}"
