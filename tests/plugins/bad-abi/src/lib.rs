//! Declares a plugin built against another plugin-API version with other type layouts; the
//! loader must refuse it, naming both differences, without calling its entry point.

use larder_plugin::PluginFactory;
use larder_plugin::abi::{
    BUILD_PROFILE, HostHandles, LAYOUT_VERSION, MAGIC, PluginDeclaration, RUSTC_VERSION, RawStr,
    TYPE_FINGERPRINT,
};

fn entry(_: &HostHandles) -> Result<Box<dyn PluginFactory>, String> {
    panic!("the loader must never call a mismatched plugin's entry point")
}

#[unsafe(no_mangle)]
pub static LARDER_PLUGIN_DECLARATION: PluginDeclaration = PluginDeclaration {
    magic: MAGIC,
    layout_version: LAYOUT_VERSION,
    rustc_version: RawStr::new(RUSTC_VERSION),
    api_version: RawStr::new("0.0.1+api.0"),
    build_profile: RawStr::new(BUILD_PROFILE),
    type_fingerprint: TYPE_FINGERPRINT ^ 0xdead_beef,
    entry,
};
