#!/usr/bin/env bash
# Build BatonFFI.xcframework for iOS devices and the simulator (Apple silicon and Intel).
#
#   bindings/build-ios.sh [OUT_DIR]        (default OUT_DIR: target/ios)
#
# Needs macOS with Xcode, and the Rust targets:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
# Writes OUT_DIR/BatonFFI.xcframework (the static library and the generated C header for each
# platform) and OUT_DIR/swift: BatonFFI.swift (the Swift API) and BatonUpdates.swift (its
# listeners as AsyncStreams), to add to the app target.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/ios}"
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
for target in "${targets[@]}"; do
  cargo rustc --release -p baton-ffi --lib --crate-type staticlib --target "$target"
done

# The Swift API and the C header and module map it imports, from the host build.
bindings/generate.sh "$out/generated" --release
mkdir -p "$out/headers" "$out/swift"
cp "$out/generated/swift/BatonFFIFFI.h" "$out/headers/"
cp "$out/generated/swift/BatonFFIFFI.modulemap" "$out/headers/module.modulemap"
cp "$out/generated/swift/BatonFFI.swift" bindings/swift/BatonUpdates.swift "$out/swift/"

# One library for both simulator architectures.
mkdir -p "$out/sim"
lipo -create \
  target/aarch64-apple-ios-sim/release/libbaton_ffi.a \
  target/x86_64-apple-ios/release/libbaton_ffi.a \
  -output "$out/sim/libbaton_ffi.a"

rm -rf "$out/BatonFFI.xcframework"
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libbaton_ffi.a -headers "$out/headers" \
  -library "$out/sim/libbaton_ffi.a" -headers "$out/headers" \
  -output "$out/BatonFFI.xcframework"
echo "$out/BatonFFI.xcframework and $out/swift/BatonFFI.swift"
