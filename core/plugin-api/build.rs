//! Records the exact compiler version so a dynamic plugin built with another rustc is refused
//! before any Rust-ABI call crosses the library boundary.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LARDER_RUSTC_VERSION={version}");
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=LARDER_BUILD_PROFILE={profile}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
