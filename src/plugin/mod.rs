//! Native plugins: shared libraries loaded at start-up and called with JSON.
//!
//! The interface is the C ABI of `plugins/api` (`hookyard-plugin-api`): JSON bytes in, JSON
//! bytes out, an ABI version checked at load, memory freed by the side that allocated it,
//! panics caught inside the plugin. This module holds the only `unsafe` code of the server;
//! every block says why it is sound.
//!
//! A plugin is configured as `[plugins.<name>] path = "…"`; scripts call it with
//! `plugin("<name>", value)`. With `handles = ["<protocol>", …]` it also runs on every event
//! of those protocols before the script, which sees its result as `event.plugins.<name>`.
//! A plugin error fails the event (like a script error), never the server. A plugin that
//! crashes the process (a segfault, `abort`) cannot be contained in-process: only load
//! libraries you trust as much as the server itself.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookyard_plugin_api as abi;
use serde::Deserialize;
use serde_json::Value;

/// `[plugins.<name>]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The shared library (`.so` / `.dylib` / `.dll`).
    pub path: PathBuf,
    /// Protocols whose every event this plugin handles before the script.
    #[serde(default)]
    pub handles: Vec<String>,
    /// Passed to the plugin as `options` when it handles an event.
    #[serde(default)]
    pub options: toml::Table,
}

/// A plugin that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("plugin {name} ({path}): {message}")]
pub struct LoadError {
    pub name: String,
    pub path: String,
    pub message: String,
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
    pub fn load(name: &str, path: &Path, options: Value) -> Result<Self, LoadError> {
        let fail = |message: String| LoadError { name: name.into(), path: path.display().to_string(), message };
        if !path.is_file() {
            return Err(fail("no such file".into()));
        }
        // SAFETY: loading a library runs its initialisers. The operator named this file in the
        // config as a hookyard plugin; that trust is the premise of native plugins (README).
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| fail(format!("cannot load: {e}")))?;
        // SAFETY: the symbol types are those the ABI documents for these names; a library
        // exporting a same-named symbol of another type breaks the ABI contract it claims by
        // exporting `hookyard_plugin_abi_version`, which is checked first.
        let version = unsafe { symbol::<abi::AbiVersionFn>(&library, abi::SYMBOL_ABI_VERSION) }
            .map_err(|e| fail(format!("not a hookyard plugin: {e}")))?;
        // SAFETY: a function of the documented type taking no arguments.
        let found = unsafe { version() };
        if found != abi::ABI_VERSION {
            return Err(fail(format!(
                "plugin ABI version {found}, this server speaks version {}; rebuild the plugin against hookyard-plugin-api {}",
                abi::ABI_VERSION,
                abi::ABI_VERSION
            )));
        }
        // SAFETY: as above; the ABI version matched, so the library claims this ABI.
        let (name_fn, call, free) = unsafe {
            (
                symbol::<abi::NameFn>(&library, abi::SYMBOL_NAME),
                symbol::<abi::CallFn>(&library, abi::SYMBOL_CALL),
                symbol::<abi::FreeFn>(&library, abi::SYMBOL_FREE),
            )
        };
        let (name_fn, call, free) = (name_fn.map_err(&fail)?, call.map_err(&fail)?, free.map_err(&fail)?);
        // SAFETY: the ABI promises a static NUL-terminated string (or null).
        let library_name = unsafe {
            let ptr = name_fn();
            if ptr.is_null() { String::new() } else { CStr::from_ptr(ptr).to_string_lossy().into_owned() }
        };
        Ok(Self { name: name.into(), library_name, options, call, free, _library: library })
    }

    /// Calls the plugin with `input`; its error message on failure.
    pub fn call(&self, input: &Value) -> Result<Value, String> {
        let bytes = serde_json::to_vec(input).map_err(|e| e.to_string())?;
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
            abi::STATUS_OK => {
                serde_json::from_slice(&reply).map_err(|e| format!("plugin {}: returned invalid JSON: {e}", self.name))
            }
            _ => Err(format!("plugin {}: {}", self.name, String::from_utf8_lossy(&reply))),
        }
    }
}

/// Looks up `name` as a function pointer of type `T`.
///
/// # Safety
/// `T` must be the function type the library exports under `name`.
unsafe fn symbol<T: Copy>(library: &libloading::Library, name: &[u8]) -> Result<T, String> {
    // SAFETY: forwarded to the caller (the type of the symbol).
    let sym = unsafe { library.get::<T>(name) };
    sym.map(|s| *s).map_err(|e| format!("missing symbol {}: {e}", String::from_utf8_lossy(name)))
}

/// Every configured plugin, by the name scripts use.
#[derive(Default)]
pub struct Plugins {
    by_name: BTreeMap<String, Arc<Plugin>>,
    handlers: BTreeMap<String, Vec<Arc<Plugin>>>,
}

impl Plugins {
    /// Loads every plugin of the config; every failure is reported.
    pub fn load(settings: &BTreeMap<String, PluginSettings>) -> Result<Self, Vec<LoadError>> {
        let mut plugins = Self::default();
        let mut errors = Vec::new();
        for (name, s) in settings {
            let options = serde_json::to_value(&s.options).unwrap_or(Value::Null);
            match Plugin::load(name, &s.path, options) {
                Ok(p) => {
                    tracing::info!(plugin = %name, library = %p.library_name, handles = ?s.handles, "plugin loaded");
                    let p = Arc::new(p);
                    for protocol in &s.handles {
                        plugins.handlers.entry(protocol.clone()).or_default().push(p.clone());
                    }
                    plugins.by_name.insert(name.clone(), p);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(plugins) } else { Err(errors) }
    }

    /// Calls the plugin named `name`.
    pub fn call(&self, name: &str, input: &Value) -> Result<Value, String> {
        match self.by_name.get(name) {
            Some(p) => p.call(input),
            None => Err(format!("no plugin named {name:?} is configured ([plugins.{name}] path = …)")),
        }
    }

    /// Runs the handler plugins of `protocol` on `event` (its JSON form); their results by name.
    pub fn handle(&self, protocol: &str, event: &Value) -> Result<Vec<(String, Value)>, String> {
        let Some(handlers) = self.handlers.get(protocol) else {
            return Ok(Vec::new());
        };
        handlers
            .iter()
            .map(|p| {
                let input = serde_json::json!({ "event": event, "options": p.options });
                p.call(&input).map(|out| (p.name.clone(), out))
            })
            .collect()
    }

    /// Whether any plugin handles `protocol`.
    pub fn handles(&self, protocol: &str) -> bool {
        self.handlers.contains_key(protocol)
    }

    /// Protocols with handlers (to check they exist).
    pub fn handled_protocols(&self) -> impl Iterator<Item = &String> {
        self.handlers.keys()
    }
}
