//! The boundary between the host and a dynamic plugin (a `cdylib` loaded at start).
//!
//! A dynamic plugin carries its own copies of std, tokio, tracing and every other crate. Rust
//! has no stable ABI, so the library exports a `#[repr(C)]` [`PluginDeclaration`] whose
//! leading fields have a fixed layout; the loader reads them and refuses the library unless
//! the magic, layout version, compiler version, plugin-API version, build profile and type
//! fingerprint all match its own before it calls anything.
//!
//! Once accepted, the library's entry point installs the host's runtime handle and tracing
//! dispatcher into the library's own copies ([`install_host`]), and every call or future
//! that crosses back is wrapped by [`guard`]: it enters the host runtime while polled (so
//! `tokio::time`, `tokio::spawn` work in plugin code) and turns a panic into an error, since
//! a panic unwinding across the boundary would abort the process.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use crate::plugin::{PluginError, PluginFactory};

/// First bytes of every declaration.
pub const MAGIC: [u8; 8] = *b"LARDERPL";
/// Version of [`PluginDeclaration`]'s own layout.
pub const LAYOUT_VERSION: u32 = 1;
/// Version of the plugin API; bump the suffix whenever a type crossing the boundary changes.
pub const API_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+api.9");
/// `rustc --version` of the compiler that built this copy of the crate.
pub const RUSTC_VERSION: &str = env!("LARDER_RUSTC_VERSION");
/// Cargo profile (`debug`/`release`) this copy was built in.
pub const BUILD_PROFILE: &str = env!("LARDER_BUILD_PROFILE");
/// Fingerprint of the layouts of the types that cross the boundary. Feature unification
/// can change them (a dependency built with other features), which a version check misses.
pub const TYPE_FINGERPRINT: u64 = type_fingerprint();

/// Symbol name of the exported declaration.
pub const DECLARATION_SYMBOL: &[u8] = b"LARDER_PLUGIN_DECLARATION\0";

/// A `&'static str` with a C layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawStr {
    ptr: *const u8,
    len: usize,
}

impl RawStr {
    /// Wraps a static string.
    pub const fn new(s: &'static str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Reads the string back.
    ///
    /// # Safety
    /// The pointer and length must come from [`RawStr::new`] in a library that stays loaded.
    pub unsafe fn to_string_lossy(&self) -> String {
        if self.ptr.is_null() || self.len > 4096 {
            return String::from("<unreadable>");
        }
        // SAFETY: the caller guarantees ptr/len describe a live static string.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Handles the host passes to a dynamic plugin's entry point.
pub struct HostHandles {
    /// The host's runtime, entered whenever plugin code is polled.
    pub runtime: tokio::runtime::Handle,
    /// The host's tracing dispatcher, so plugin events land in the host's logs and spans.
    pub dispatch: tracing::Dispatch,
}

/// Entry point, called only after every check passed.
pub type EntryFn = fn(&HostHandles) -> Result<Box<dyn PluginFactory>, String>;

/// What a dynamic plugin exports as `LARDER_PLUGIN_DECLARATION`.
#[repr(C)]
pub struct PluginDeclaration {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`] of the library.
    pub layout_version: u32,
    /// [`RUSTC_VERSION`] of the library.
    pub rustc_version: RawStr,
    /// [`API_VERSION`] of the library.
    pub api_version: RawStr,
    /// [`BUILD_PROFILE`] of the library.
    pub build_profile: RawStr,
    /// [`TYPE_FINGERPRINT`] of the library.
    pub type_fingerprint: u64,
    /// Builds the plugin's factory.
    pub entry: EntryFn,
}

// SAFETY: the declaration only holds pointers to immutable statics and a fn pointer.
unsafe impl Sync for PluginDeclaration {}

impl PluginDeclaration {
    /// The declaration for this build; used by [`crate::export_plugin!`].
    pub const fn current(entry: EntryFn) -> Self {
        Self {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            rustc_version: RawStr::new(RUSTC_VERSION),
            api_version: RawStr::new(API_VERSION),
            build_profile: RawStr::new(BUILD_PROFILE),
            type_fingerprint: TYPE_FINGERPRINT,
            entry,
        }
    }

    /// Compares a library's declaration with the host's and names every difference.
    ///
    /// # Safety
    /// `decl` must point at a readable `LARDER_PLUGIN_DECLARATION` symbol. Only the magic is
    /// read before it is known to match; the other fields only when the layout matches.
    pub unsafe fn check(decl: *const PluginDeclaration) -> Result<(), Vec<String>> {
        // SAFETY: the symbol is at least 8 bytes if it is a declaration at all; the magic
        // is the first field of a repr(C) struct.
        let magic = unsafe { std::ptr::read_unaligned(decl.cast::<[u8; 8]>()) };
        if magic != MAGIC {
            return Err(vec![format!(
                "magic bytes are {:?}, expected {:?}: not a Larder plugin declaration",
                String::from_utf8_lossy(&magic),
                String::from_utf8_lossy(&MAGIC)
            )]);
        }
        // SAFETY: magic matched, so the layout-version field follows it.
        let decl = unsafe { &*decl };
        if decl.layout_version != LAYOUT_VERSION {
            return Err(vec![format!(
                "declaration layout version: library has {}, host has {LAYOUT_VERSION}",
                decl.layout_version
            )]);
        }
        let mut diffs = Vec::new();
        let mut cmp = |what: &str, theirs: String, ours: &str| {
            if theirs != ours {
                diffs.push(format!("{what}: library has `{theirs}`, host has `{ours}`"));
            }
        };
        // SAFETY: layout matched, so the RawStr fields are valid statics of the library.
        unsafe {
            cmp(
                "rustc version",
                decl.rustc_version.to_string_lossy(),
                RUSTC_VERSION,
            );
            cmp(
                "plugin API version",
                decl.api_version.to_string_lossy(),
                API_VERSION,
            );
            cmp(
                "build profile",
                decl.build_profile.to_string_lossy(),
                BUILD_PROFILE,
            );
        }
        if decl.type_fingerprint != TYPE_FINGERPRINT {
            diffs.push(format!(
                "type fingerprint: library has {:016x}, host has {TYPE_FINGERPRINT:016x} \
                 (dependencies built with other features; build the plugin and the host in \
                 one cargo invocation)",
                decl.type_fingerprint
            ));
        }
        if diffs.is_empty() { Ok(()) } else { Err(diffs) }
    }
}

/// Exports a [`crate::Plugin`] from a `cdylib` so the host can load it.
///
/// ```ignore
/// larder_plugin::export_plugin!(HelloPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[unsafe(no_mangle)]
        pub static LARDER_PLUGIN_DECLARATION: $crate::abi::PluginDeclaration =
            $crate::abi::PluginDeclaration::current(__larder_plugin_entry);

        fn __larder_plugin_entry(
            host: &$crate::abi::HostHandles,
        ) -> ::std::result::Result<
            ::std::boxed::Box<dyn $crate::PluginFactory>,
            ::std::string::String,
        > {
            $crate::abi::install_host(host);
            $crate::abi::catch(|| $crate::factory::<$plugin>()).map_err(|e| e.to_string())
        }
    };
}

/// The host runtime, set in a dynamic plugin's copy of this crate by [`install_host`].
/// Unset in the host itself, where plugin code already runs on the right runtime.
static HOST_RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// Installs the host's runtime and tracing dispatcher into this library's globals.
pub fn install_host(host: &HostHandles) {
    let _ = HOST_RUNTIME.set(host.runtime.clone());
    // The library's tracing has its own global dispatcher; point it at the host's and
    // recompute every callsite's interest, so filters configured in the host apply here.
    let _ = tracing::dispatcher::set_global_default(host.dispatch.clone());
    tracing_core::callsite::rebuild_interest_cache();
}

/// Runs `f`, turning a panic into [`PluginError::Panicked`].
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, PluginError> {
    let _runtime = HOST_RUNTIME.get().map(|h| h.enter());
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| PluginError::Panicked(panic_message(&*p)))
}

/// Best-effort text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

pin_project_lite::pin_project! {
    /// A future that runs inside the host runtime and reports a panic as an error.
    pub struct Guarded<F> {
        #[pin]
        inner: F,
        done: bool,
    }
}

/// Wraps plugin code that crosses to the host; see the module docs.
pub fn guard<F: Future>(inner: F) -> Guarded<F> {
    Guarded { inner, done: false }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, PluginError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(Err(PluginError::Panicked(
                "polled again after a panic".into(),
            )));
        }
        let _runtime = HOST_RUNTIME.get().map(|h| h.enter());
        let inner = this.inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => {
                *this.done = true;
                Poll::Ready(Err(PluginError::Panicked(panic_message(&*payload))))
            }
        }
    }
}

const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn mix_layout<T>(hash: u64) -> u64 {
    let hash = fnv1a(hash, &(std::mem::size_of::<T>() as u64).to_le_bytes());
    fnv1a(hash, &(std::mem::align_of::<T>() as u64).to_le_bytes())
}

const fn type_fingerprint() -> u64 {
    use poem_openapi::registry::{MetaApi, MetaOperation, MetaSchema, Registry};
    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, API_VERSION.as_bytes());
    h = mix_layout::<poem::Request>(h);
    h = mix_layout::<poem::Response>(h);
    h = mix_layout::<poem::Error>(h);
    h = mix_layout::<poem::Body>(h);
    h = mix_layout::<poem::http::HeaderMap>(h);
    h = mix_layout::<poem::endpoint::BoxEndpoint<'static>>(h);
    h = mix_layout::<MetaApi>(h);
    h = mix_layout::<MetaOperation>(h);
    h = mix_layout::<MetaSchema>(h);
    h = mix_layout::<Registry>(h);
    h = mix_layout::<tokio::runtime::Handle>(h);
    h = mix_layout::<tracing::Dispatch>(h);
    h = mix_layout::<tracing::Span>(h);
    h = mix_layout::<serde_json::Value>(h);
    h = mix_layout::<bytes::Bytes>(h);
    h = mix_layout::<crate::PluginContext>(h);
    h = mix_layout::<crate::Event>(h);
    h = mix_layout::<crate::WarmRequest>(h);
    h = mix_layout::<crate::EventSpec>(h);
    h = mix_layout::<crate::NamedRuleSpec>(h);
    h = mix_layout::<crate::Principal>(h);
    h = mix_layout::<crate::RoutePermission>(h);
    h = mix_layout::<crate::KeyListing>(h);
    h = mix_layout::<crate::CacheHealth>(h);
    h = mix_layout::<PluginError>(h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(_: &HostHandles) -> Result<Box<dyn PluginFactory>, String> {
        Err("unused".into())
    }

    #[test]
    fn own_declaration_passes() {
        let decl = PluginDeclaration::current(entry);
        assert!(unsafe { PluginDeclaration::check(&decl) }.is_ok());
    }

    #[test]
    fn every_difference_is_named() {
        let mut decl = PluginDeclaration::current(entry);
        decl.api_version = RawStr::new("0.0.0+api.0");
        decl.type_fingerprint ^= 1;
        let diffs = unsafe { PluginDeclaration::check(&decl) }.unwrap_err();
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].contains("plugin API version") && diffs[0].contains("0.0.0+api.0"));
        assert!(diffs[1].contains("type fingerprint"));
    }

    #[test]
    fn wrong_magic_stops_before_reading_more() {
        let mut decl = PluginDeclaration::current(entry);
        decl.magic = *b"NOTMAGIC";
        let diffs = unsafe { PluginDeclaration::check(&decl) }.unwrap_err();
        assert!(diffs[0].contains("not a Larder plugin"), "{diffs:?}");
    }

    #[tokio::test]
    async fn guard_turns_a_panic_into_an_error() {
        let out = guard(async {
            if true {
                panic!("boom")
            }
        })
        .await;
        match out {
            Err(PluginError::Panicked(m)) => assert_eq!(m, "boom"),
            other => panic!("expected a caught panic, got {other:?}"),
        }
    }
}
