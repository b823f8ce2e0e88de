//! `cargo run -p uniffi-bindgen -- generate --library target/…/libbaton_ffi.so --language kotlin
//! --out-dir …`: the bindings generator, as its own binary.

fn main() {
    uniffi::uniffi_bindgen_main()
}
