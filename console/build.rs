//! Rebuilds the crate when anything under `web/` changes, a new file included: the embedded
//! files are read at compile time, and cargo only watches the files it was told about.

fn main() {
    println!("cargo:rerun-if-changed=web");
}
