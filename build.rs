// Builds the Berkeley DB shim for hash: and btree: tables when the `bdb` feature is on.
fn main() {
    println!("cargo:rerun-if-changed=src/table/bdb_shim.c");
    if std::env::var_os("CARGO_FEATURE_BDB").is_some() {
        cc::Build::new()
            .file("src/table/bdb_shim.c")
            .warnings(true)
            .compile("outpost_bdb_shim");
        println!("cargo:rustc-link-lib=db");
    }
}
