//! `cargo xtask new-plugin NAME`: a plugin crate under `plugins/NAME` that builds, ships a
//! policy, and has a test through `larder_core::testing::mount`, added to the workspace.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// What to scaffold.
#[derive(clap::Args)]
pub struct Args {
    /// The plugin's name: lower case letters, digits and `-` (`inventory`, `price-feed`).
    name: String,
}

/// Writes the crate, adds it to the workspace, and says what to run next.
pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let dir = scaffold(&root, &args.name)?;
    eprintln!(
        "created {} and added it to the workspace; next:\n  cargo test -p larder-{}\n  \
         then register it in server/src/main.rs (built in) or build it as a cdylib (dynamic)",
        dir.display(),
        args.name
    );
    Ok(())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    // xtask lives at <root>/xtask.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .context("xtask has no parent folder")
}

/// Whether `name` can be a plugin name, a crate name and a policy identifier at once.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "`{name}`: a plugin name is lower case letters, digits and `-`, starting with a letter"
        );
    }
    Ok(())
}

/// Writes `plugins/<name>` under `root` and adds it to the root `Cargo.toml`'s members.
pub fn scaffold(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = root.join("plugins").join(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let ty = type_name(name);
    let krate = name.replace('-', "_");
    for (path, text) in [
        ("Cargo.toml", CARGO.to_owned()),
        ("src/lib.rs", LIB.to_owned()),
        ("policy.yaml", POLICY.to_owned()),
        ("tests/plugin.rs", TEST.to_owned()),
    ] {
        let text = text
            .replace("__NAME__", name)
            .replace("__TYPE__", &ty)
            .replace("__CRATE__", &krate);
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a parent"))?;
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    add_member(&root.join("Cargo.toml"), &format!("plugins/{name}"))?;
    Ok(dir)
}

/// `price-feed` → `PriceFeedPlugin`.
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split('-') {
        let mut c = part.chars();
        if let Some(first) = c.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(c);
        }
    }
    out + "Plugin"
}

/// Adds `member` to `[workspace] members` of the manifest at `path`, keeping its layout.
fn add_member(path: &Path, member: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let start = text
        .find("members = [")
        .context("the root Cargo.toml has no `members = [` list")?;
    let end = start
        + text[start..]
            .find(']')
            .context("unterminated members list")?;
    if text[start..end].contains(&format!("\"{member}\"")) {
        return Ok(());
    }
    let updated = format!("{}    \"{member}\",\n{}", &text[..end], &text[end..]);
    std::fs::write(path, updated)?;
    Ok(())
}

const CARGO: &str = r#"[package]
name = "larder-__NAME__"
description = "Larder plugin `__NAME__`."
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
# rlib: built into the larder binary; cdylib: loaded at start as a dynamic plugin.
crate-type = ["rlib", "cdylib"]

[dependencies]
larder-plugin.workspace = true
poem-openapi.workspace = true
schemars.workspace = true
serde.workspace = true
serde_json.workspace = true

[dev-dependencies]
larder-core.workspace = true
tokio.workspace = true
"#;

const LIB: &str = r#"//! Larder plugin `__NAME__`.

use std::sync::Arc;

use larder_plugin::{Plugin, PluginApi, PluginError, PluginInit};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use schemars::JsonSchema;
use serde::Deserialize;

/// Settings under `plugins.__NAME__.settings`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Prefix of every item's name.
    pub prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            prefix: "item".into(),
        }
    }
}

/// One item.
#[derive(Object, Debug)]
pub struct Item {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// The plugin.
pub struct __TYPE__ {
    settings: Arc<Settings>,
}

struct Api {
    settings: Arc<Settings>,
}

#[OpenApi]
impl Api {
    /// One item (cached as `policy.yaml` says).
    #[oai(path = "/items/:id", method = "get", operation_id = "get_item")]
    async fn get_item(&self, id: Path<u64>) -> Json<Item> {
        Json(Item {
            id: id.0,
            name: format!("{} {}", self.settings.prefix, id.0),
        })
    }
}

impl Plugin for __TYPE__ {
    type Config = Settings;
    const NAME: &'static str = "__NAME__";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Plugin __NAME__.";
    const DEFAULT_POLICY: Option<&'static str> = Some(include_str!("../policy.yaml"));

    async fn new(init: PluginInit<Settings>) -> Result<Self, PluginError> {
        Ok(Self {
            settings: Arc::new(init.config),
        })
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(Api {
            settings: self.settings.clone(),
        })
    }
}

larder_plugin::export_plugin!(__TYPE__);
"#;

const POLICY: &str = r#"# The policy plugin `__NAME__` ships; an operator's policy folder naming the plugin
# replaces it.
version: 1
rules:
  - name: __NAME__-item
    match: { plugin: __NAME__, operation: get_item }
    key: "__NAME__:item:{path.id}"
    ttl: 5m
    tags: ["__NAME__-item:{path.id}"]
"#;

const TEST: &str = r#"//! The plugin in the whole application, in process.

use larder___CRATE__::__TYPE__;
use larder_core::testing::{Mount, mount};

#[tokio::test]
async fn an_item_is_served_then_cached() {
    let m = mount::<__TYPE__>(Mount::default()).await;
    let first = m.client.get("/items/7").send().await;
    first.assert_status_is_ok();
    assert!(m.cache_status(&first).contains("stored"), "{}", m.cache_status(&first));
    first
        .assert_json(serde_json::json!({ "id": 7, "name": "item 7" }))
        .await;
    let again = m.client.get("/items/7").send().await;
    assert!(m.cache_status(&again).contains("hit"), "{}", m.cache_status(&again));
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The real workspace's manifest turned into one whose only member is the scaffolded
    /// plugin: same profiles and dependency versions (so the shared target directory's
    /// builds are reused), the workspace's crates by absolute path.
    fn scratch_manifest(real_root: &Path) -> String {
        let text = std::fs::read_to_string(real_root.join("Cargo.toml")).unwrap();
        let start = text.find("members = [").unwrap();
        let end = start + text[start..].find(']').unwrap() + 1;
        let mut out = format!("{}members = []{}", &text[..start], &text[end..]);
        out = out
            .lines()
            .filter(|l| !l.starts_with("default-members"))
            .map(|l| match l.split_once("path = \"") {
                Some((head, rest)) => format!("{head}path = \"{}/{rest}", real_root.display()),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        out
    }

    /// `cargo xtask new-plugin` gives a crate whose own test passes: scaffolded into a
    /// scratch workspace next to this one's crates, built in this target directory.
    #[test]
    fn a_scaffolded_plugin_builds_and_passes_its_test() {
        let real_root = workspace_root().unwrap();
        let scratch = std::env::temp_dir().join(format!("xtask-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("Cargo.toml"), scratch_manifest(&real_root)).unwrap();
        std::fs::copy(real_root.join("Cargo.lock"), scratch.join("Cargo.lock")).unwrap();
        scaffold(&scratch, "scaffold-check").unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| real_root.join("target"));
        let out = std::process::Command::new(super::super::cargo())
            .current_dir(&scratch)
            .args(["test", "--offline", "-p", "larder-scaffold-check"])
            .env("CARGO_TARGET_DIR", target)
            .env_remove("CARGO_MANIFEST_DIR")
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{log}");
        assert!(
            log.contains("test an_item_is_served_then_cached ... ok"),
            "{log}"
        );
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn names_types_and_members() {
        assert!(check_name("price-feed").is_ok());
        for bad in ["Price", "9x", "a_b", "x-", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("price-feed"), "PriceFeedPlugin");
        let dir = std::env::temp_dir().join(format!("xtask-members-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("Cargo.toml");
        std::fs::write(&manifest, "[workspace]\nmembers = [\n    \"core\",\n]\n").unwrap();
        add_member(&manifest, "plugins/demo").unwrap();
        add_member(&manifest, "plugins/demo").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "[workspace]\nmembers = [\n    \"core\",\n    \"plugins/demo\",\n]\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
