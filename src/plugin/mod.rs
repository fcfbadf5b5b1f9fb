//! Native plugins: shared libraries loaded at start-up and called with JSON.
//!
//! The interface is the C ABI of `plugins/api` (`hookyard-plugin-api`): JSON bytes in, JSON
//! bytes out, an ABI version checked at load, memory freed by the side that allocated it,
//! panics caught inside the plugin. This module holds the only `unsafe` code of the server;
//! every block says why it is sound.
//!
//! A plugin is configured as `[plugins.<name>] path = "…"`; scripts call it with
//! `plugin("<name>", value)`. With `handles = ["<protocol>/<operationId>", …]` (or
//! `"<protocol>/*"` for every operation of a protocol) it also runs on every event of those
//! operations before the script, which sees its result as `event.plugins.<name>`; the entries
//! are checked against the specs at load (`handles.rs`). A plugin error fails the event (the
//! failure names the plugin), never the server. A plugin that crashes the process (a
//! segfault, `abort`) cannot be contained in-process: only load libraries you trust as much
//! as the server itself.

mod handles;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookyard_plugin_api as abi;
use serde::Deserialize;
use serde_json::Value;

use crate::event::Event;

/// `[plugins.<name>]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The shared library (`.so` / `.dylib` / `.dll`).
    pub path: PathBuf,
    /// Operations (`"<protocol>/<operationId>"`, or `"<protocol>/*"`) whose every event this
    /// plugin handles before the script.
    #[serde(default)]
    pub handles: Vec<String>,
    /// Passed to the plugin as `options` when it handles an event.
    #[serde(default)]
    pub options: toml::Table,
}

/// The protocols of the specs and their operations (`operationId`s), which `handles` may name.
pub type KnownOperations = BTreeMap<String, Vec<String>>;

/// Which plugin, from which file (the start of every load error).
#[derive(Clone, Debug)]
pub struct PluginFile {
    pub name: String,
    pub path: String,
}

impl fmt::Display for PluginFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {} ({})", self.name, self.path)
    }
}

/// What went wrong loading, attaching or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}: no such file")]
    NoSuchFile(PluginFile),
    #[error("{0}: cannot load: {1}")]
    CannotOpen(PluginFile, libloading::Error),
    #[error("{0}: not a hookyard plugin: missing symbol hookyard_plugin_abi_version: {1}")]
    NotAPlugin(PluginFile, libloading::Error),
    #[error("{0}: missing symbol {symbol}: {2}", symbol = String::from_utf8_lossy(.1))]
    MissingSymbol(PluginFile, &'static [u8], libloading::Error),
    #[error(
        "{0}: plugin ABI version {1}, this server speaks version {v}; rebuild the plugin against hookyard-plugin-api {v}",
        v = abi::ABI_VERSION
    )]
    AbiVersion(PluginFile, u32),
    #[error("[plugins.{plugin}] handles = [{entry:?}]: there is no protocol {protocol}")]
    UnknownProtocol { plugin: String, entry: String, protocol: String },
    #[error(
        "[plugins.{plugin}] handles = [{entry:?}]: {protocol} has no operation {operation:?} (its operations: {known})"
    )]
    UnknownOperation { plugin: String, entry: String, protocol: String, operation: String, known: String },
    #[error(
        "[plugins.{plugin}] handles = [{entry:?}]: name the operations to handle as \"<protocol>/<operationId>\": {choices}, or \"{entry}/*\" for all of them"
    )]
    WholeProtocol { plugin: String, entry: String, choices: String },
    #[error("no plugin named {0:?} is configured ([plugins.{0}] path = …)")]
    NotConfigured(String),
    #[error("plugin {plugin} failed: {message}")]
    Failed { plugin: String, message: String },
    #[error("plugin {plugin} returned invalid JSON: {error}")]
    InvalidReply { plugin: String, error: serde_json::Error },
    #[error("plugin {plugin}: its input cannot be encoded: {error}")]
    InvalidInput { plugin: String, error: serde_json::Error },
}

impl PluginError {
    /// The configured name of the plugin this error is about.
    pub fn plugin(&self) -> &str {
        match self {
            Self::NoSuchFile(o)
            | Self::CannotOpen(o, _)
            | Self::NotAPlugin(o, _)
            | Self::MissingSymbol(o, ..)
            | Self::AbiVersion(o, _) => &o.name,
            Self::UnknownProtocol { plugin, .. }
            | Self::UnknownOperation { plugin, .. }
            | Self::WholeProtocol { plugin, .. }
            | Self::Failed { plugin, .. }
            | Self::InvalidReply { plugin, .. }
            | Self::InvalidInput { plugin, .. } => plugin,
            Self::NotConfigured(name) => name,
        }
    }
}

/// One loaded library.
pub struct Plugin {
    name: String,
    /// The name the library reports for itself.
    pub library_name: String,
    options: Value,
    call: abi::CallFn,
    free: abi::FreeFn,
    /// Keeps the code mapped for as long as `call`/`free` may be used (declared last, so it
    /// is dropped after everything else).
    _library: libloading::Library,
}

impl Plugin {
    /// Loads `path`, checking the ABI version and every symbol.
    pub fn load(name: &str, path: &Path, options: Value) -> Result<Self, PluginError> {
        let file = PluginFile { name: name.into(), path: path.display().to_string() };
        if !path.is_file() {
            return Err(PluginError::NoSuchFile(file));
        }
        // SAFETY: loading a library runs its initialisers. The operator named this file in the
        // config as a hookyard plugin; that trust is the premise of native plugins (README).
        let opened = unsafe { libloading::Library::new(path) };
        let library = opened.map_err(|e| PluginError::CannotOpen(file.clone(), e))?;
        // SAFETY: the symbol types are those the ABI documents for these names; a library
        // exporting a same-named symbol of another type breaks the ABI contract it claims by
        // exporting `hookyard_plugin_abi_version`, which is checked first.
        let version = unsafe { symbol::<abi::AbiVersionFn>(&library, abi::SYMBOL_ABI_VERSION) }
            .map_err(|e| PluginError::NotAPlugin(file.clone(), e))?;
        // SAFETY: a function of the documented type taking no arguments.
        let found = unsafe { version() };
        if found != abi::ABI_VERSION {
            return Err(PluginError::AbiVersion(file, found));
        }
        let missing = |symbol: &'static [u8]| {
            let file = file.clone();
            move |e| PluginError::MissingSymbol(file, symbol, e)
        };
        // SAFETY: as above; the ABI version matched, so the library claims this ABI.
        let (name_fn, call, free) = unsafe {
            (
                symbol::<abi::NameFn>(&library, abi::SYMBOL_NAME).map_err(missing(abi::SYMBOL_NAME))?,
                symbol::<abi::CallFn>(&library, abi::SYMBOL_CALL).map_err(missing(abi::SYMBOL_CALL))?,
                symbol::<abi::FreeFn>(&library, abi::SYMBOL_FREE).map_err(missing(abi::SYMBOL_FREE))?,
            )
        };
        // SAFETY: the ABI promises a static NUL-terminated string (or null).
        let library_name = unsafe {
            let ptr = name_fn();
            if ptr.is_null() { String::new() } else { CStr::from_ptr(ptr).to_string_lossy().into_owned() }
        };
        Ok(Self { name: name.into(), library_name, options, call, free, _library: library })
    }

    /// Calls the plugin with `input`: its JSON reply, or its error message.
    pub fn call(&self, input: &Value) -> Result<Value, PluginError> {
        let bytes = serde_json::to_vec(input)
            .map_err(|error| PluginError::InvalidInput { plugin: self.name.clone(), error })?;
        let mut out = abi::Buffer::empty();
        // SAFETY: `bytes` lives across the call and `out` is a valid, writable Buffer; `call`
        // comes from a library whose ABI version matched and which is still loaded (self
        // owns it). The plugin catches its own panics (the export macro does).
        let status = unsafe { (self.call)(bytes.as_ptr(), bytes.len(), &mut out) };
        let reply = if out.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: the plugin filled `out` with `len` initialised bytes it owns until we
            // hand the buffer back to its own `free` right below.
            unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec()
        };
        // SAFETY: `out` came from this plugin's `call` and is freed exactly once, by it.
        unsafe { (self.free)(out) };
        match status {
            abi::STATUS_OK => serde_json::from_slice(&reply)
                .map_err(|error| PluginError::InvalidReply { plugin: self.name.clone(), error }),
            _ => Err(PluginError::Failed {
                plugin: self.name.clone(),
                message: String::from_utf8_lossy(&reply).into_owned(),
            }),
        }
    }
}

/// Looks up `name` as a function pointer of type `T`.
///
/// # Safety
/// `T` must be the function type the library exports under `name`.
unsafe fn symbol<T: Copy>(library: &libloading::Library, name: &[u8]) -> Result<T, libloading::Error> {
    // SAFETY: forwarded to the caller (the type of the symbol).
    let sym = unsafe { library.get::<T>(name) };
    sym.map(|s| *s)
}

/// Every configured plugin, by the name scripts use, and the handlers of each operation.
#[derive(Default)]
pub struct Plugins {
    by_name: BTreeMap<String, Arc<Plugin>>,
    /// protocol → operationId → the plugins handling its events (in name order).
    handlers: BTreeMap<String, BTreeMap<String, Vec<Arc<Plugin>>>>,
}

impl Plugins {
    /// Loads every plugin of the config and attaches the handlers to the `known` operations;
    /// every problem is reported.
    pub fn load(
        settings: &BTreeMap<String, PluginSettings>,
        known: &KnownOperations,
    ) -> Result<Self, Vec<PluginError>> {
        let mut plugins = Self::default();
        let mut errors = Vec::new();
        for (name, s) in settings {
            let targets = handles::resolve(name, &s.handles, known).unwrap_or_else(|e| {
                errors.extend(e);
                Vec::new()
            });
            let options = serde_json::to_value(&s.options).unwrap_or(Value::Null);
            match Plugin::load(name, &s.path, options) {
                Ok(p) => {
                    tracing::info!(plugin = %name, library = %p.library_name, handles = ?s.handles, "plugin loaded");
                    plugins.attach(Arc::new(p), targets);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(plugins) } else { Err(errors) }
    }

    fn attach(&mut self, plugin: Arc<Plugin>, targets: Vec<(String, String)>) {
        for (protocol, operation) in targets {
            self.handlers.entry(protocol).or_default().entry(operation).or_default().push(plugin.clone());
        }
        self.by_name.insert(plugin.name.clone(), plugin);
    }

    /// Calls the plugin named `name`.
    pub fn call(&self, name: &str, input: &Value) -> Result<Value, PluginError> {
        match self.by_name.get(name) {
            Some(p) => p.call(input),
            None => Err(PluginError::NotConfigured(name.into())),
        }
    }

    /// Runs the plugins handling the operation of `event` on it; their results by name (none
    /// when no plugin handles that operation).
    pub fn handle(&self, event: &Event) -> Result<Vec<(String, Value)>, PluginError> {
        let Some(handlers) = self.handlers.get(&event.protocol).and_then(|ops| ops.get(&event.operation)) else {
            return Ok(Vec::new());
        };
        let event = event.to_json();
        handlers
            .iter()
            .map(|p| {
                let input = serde_json::json!({ "event": event, "options": p.options });
                p.call(&input).map(|out| (p.name.clone(), out))
            })
            .collect()
    }
}
