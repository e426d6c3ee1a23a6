//! `include/loradock.h` is generated from `src/ffi` by cbindgen; this test regenerates it
//! and fails when the checked-in header differs (`LORADOCK_WRITE_HEADER=1` rewrites it).

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let v = env!("CARGO_PKG_VERSION");
    let parts: Vec<&str> = v.split(['.', '-']).collect();
    config.after_includes = Some(format!(
        "\n#define LORADOCK_VERSION_MAJOR {}\n#define LORADOCK_VERSION_MINOR {}\n#define LORADOCK_VERSION_PATCH {}\n#define LORADOCK_VERSION_STRING \"{v}\"\n",
        parts[0], parts[1], parts[2]
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
