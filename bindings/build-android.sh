#!/usr/bin/env bash
# Build an Android library (AAR) holding libbaton_ffi.so for each Android ABI and the generated
# Kotlin, with cargo-ndk.
#
#   bindings/build-android.sh [OUT_DIR]    (default OUT_DIR: target/android)
#
# Needs the Android NDK (ANDROID_NDK_HOME), cargo-ndk (`cargo install cargo-ndk`), the Rust
# targets (`rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`)
# and a JDK. Writes OUT_DIR/baton-ffi.aar: jni/<abi>/libbaton_ffi.so, classes.jar (the generated
# Kotlin and bindings/kotlin/src, compiled), and the manifest. The app adds JNA
# (`net.java.dev.jna:jna:5.x@aar`) and kotlinx-coroutines as its own dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/android}"
work="$out/aar"
rm -rf "$work" && mkdir -p "$work/jni"

cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o "$work/jni" build --release -p baton-ffi

bindings/generate.sh "$out/generated" --release
classpath="${BATON_ANDROID_CLASSPATH:?set BATON_ANDROID_CLASSPATH to the JNA and kotlinx-coroutines jars}"
kotlinc="${KOTLINC:-bindings/kotlin/node_modules/kotlin-compiler/bin/kotlinc}"
"$kotlinc" -cp "$classpath" \
  "$out/generated/kotlin/health/baton/ffi/baton_ffi.kt" bindings/kotlin/src/health/baton/Updates.kt \
  -d "$work/classes"
(cd "$work/classes" && jar cf ../classes.jar .)
rm -rf "$work/classes"
cat > "$work/AndroidManifest.xml" <<'XML'
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="health.baton.ffi">
  <uses-permission android:name="android.permission.INTERNET" />
</manifest>
XML
(cd "$work" && rm -f ../baton-ffi.aar && zip -qr ../baton-ffi.aar AndroidManifest.xml classes.jar jni)
echo "$out/baton-ffi.aar"
