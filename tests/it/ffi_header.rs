//! `include/loradock.h` is generated from `src/ffi` by cbindgen; this test regenerates it
//! and fails when the checked-in header differs (`LORADOCK_WRITE_HEADER=1` rewrites it).

use std::path::Path;

/// The opaque handle types: `repr(C)` in Rust (their tag comes first), declared here by name
/// only.
const HANDLES: &str =
    "// A running runtime (opaque). Every call taking a loradock_runtime* may be made from any
// thread, concurrently. Handles carry a tag: a pointer to another handle type, or to a freed
// handle whose memory was not reused, is refused with LORADOCK_STATUS_INVALID_ARGUMENT
// (using a freed handle is still undefined behaviour).
typedef struct loradock_runtime loradock_runtime;

// A request's event stream (opaque). One reader at a time; calls on one stream from several
// threads are serialized. Free with loradock_stream_free. Tagged like loradock_runtime.
typedef struct loradock_stream loradock_stream;
";

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let v = env!("CARGO_PKG_VERSION");
    let parts: Vec<&str> = v.split(['.', '-']).collect();
    config.after_includes = Some(format!(
        "\n#define LORADOCK_VERSION_MAJOR {}\n#define LORADOCK_VERSION_MINOR {}\n#define LORADOCK_VERSION_PATCH {}\n#define LORADOCK_VERSION_STRING \"{v}\"\n\n{}",
        parts[0], parts[1], parts[2], HANDLES
    ));
    let mut out = Vec::new();
    // Only the ffi module is C-facing: parse it (and its submodules), not the whole crate.
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn header_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/loradock.h");
    let fresh = generate();
    if std::env::var_os("LORADOCK_WRITE_HEADER").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "include/loradock.h is stale: run `LORADOCK_WRITE_HEADER=1 cargo test --test it ffi_header` and commit it"
    );
    for name in
        ["loradock_runtime_new", "loradock_stream_next", "LORADOCK_STATUS_PANIC", "LORADOCK_VERSION_MAJOR"]
    {
        assert!(fresh.contains(name), "the header declares {name}");
    }
}
