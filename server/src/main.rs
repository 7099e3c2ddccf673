//! The `larder` binary: the CLI of `larder-core` with the built-in plugins registered.

use larder_core::plugins::PluginRegistry;

fn main() -> std::process::ExitCode {
    let mut registry = PluginRegistry::empty();
    // One line per built-in plugin (and its crate in this package's Cargo.toml).
    registry.register::<larder_aliexpress::AliexpressPlugin>();
    registry.register::<larder_analytics::AnalyticsPlugin>();
    registry.register::<larder_booking::BookingPlugin>();
    registry.register::<larder_products::ProductsPlugin>();
    larder_core::app::cli::main(registry)
}
