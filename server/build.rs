//! With `embed`, the binary carries `target/site`: rebuild whenever a file there is added,
//! removed or changed, so it never embeds a stale console.

fn main() {
    if std::env::var_os("CARGO_FEATURE_EMBED").is_some() {
        println!("cargo:rerun-if-changed=../target/site");
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
