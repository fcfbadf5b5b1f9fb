//! The native plugin interface of hookyard, version [`ABI_VERSION`].
//!
//! A plugin is a shared library (`cdylib`) exporting four C functions:
//!
//! | symbol | signature | meaning |
//! |---|---|---|
//! | `hookyard_plugin_abi_version` | `extern "C" fn() -> u32` | must return [`ABI_VERSION`] |
//! | `hookyard_plugin_name` | `extern "C" fn() -> *const c_char` | NUL-terminated name, static |
//! | `hookyard_plugin_call` | `extern "C" fn(*const u8, usize, *mut Buffer) -> i32` | JSON in, JSON out |
//! | `hookyard_plugin_free` | `extern "C" fn(Buffer)` | frees a buffer the plugin returned |
//!
//! `hookyard_plugin_call` reads the UTF-8 JSON input (owned by the host, valid only during
//! the call) and fills the [`Buffer`]: on success (return [`STATUS_OK`]) with the JSON result,
//! on failure (return [`STATUS_ERROR`]) with a UTF-8 error message. The buffer is allocated by
//! the plugin and handed back to `hookyard_plugin_free` of the same plugin: memory is always
//! freed by the side that allocated it. Panics never cross the boundary: they are caught and
//! returned as errors.
//!
//! Write a plugin as a plain Rust function and let [`export_plugin!`] generate the symbols:
//!
//! ```
//! fn check(input: serde_json::Value) -> Result<serde_json::Value, String> {
//!     let value = input["value"].as_f64().ok_or("value: a number is required")?;
//!     Ok(serde_json::json!({ "doubled": value * 2.0 }))
//! }
//! hookyard_plugin_api::export_plugin!("doubler", check);
//!
//! let (status, reply) = hookyard_plugin_api::dispatch(br#"{"value": 2}"#, check);
//! assert_eq!((status, reply.as_slice()), (hookyard_plugin_api::STATUS_OK, br#"{"doubled":4.0}"#.as_slice()));
//! ```
//!
//! Calls may come from several threads at once: keep shared state behind a `Mutex`.

pub use serde_json;

/// Bumped whenever a symbol, a signature or the meaning of the bytes changes.
pub const ABI_VERSION: u32 = 1;

/// `hookyard_plugin_call` succeeded; the buffer holds JSON.
pub const STATUS_OK: i32 = 0;
/// `hookyard_plugin_call` failed; the buffer holds a UTF-8 message.
pub const STATUS_ERROR: i32 = 1;

pub const SYMBOL_ABI_VERSION: &[u8] = b"hookyard_plugin_abi_version";
pub const SYMBOL_NAME: &[u8] = b"hookyard_plugin_name";
pub const SYMBOL_CALL: &[u8] = b"hookyard_plugin_call";
pub const SYMBOL_FREE: &[u8] = b"hookyard_plugin_free";

/// Bytes allocated by a plugin (a `Vec<u8>` taken apart), returned to the host.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    /// An empty buffer (nothing to free).
    pub const fn empty() -> Self {
        Self { ptr: std::ptr::null_mut(), len: 0, cap: 0 }
    }

    /// Takes ownership of `bytes` (plugin side).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Self { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
    }

    /// Gives the bytes back to the allocator they came from (plugin side, in
    /// `hookyard_plugin_free`).
    ///
    /// # Safety
    /// `self` must come from [`Buffer::from_vec`] in the same library and not be freed yet.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller guarantees ptr/len/cap came from a Vec<u8> of this allocator.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }
}

/// The signatures of the exported functions (for the host's loader).
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
pub type NameFn = unsafe extern "C" fn() -> *const std::ffi::c_char;
pub type CallFn = unsafe extern "C" fn(*const u8, usize, *mut Buffer) -> i32;
pub type FreeFn = unsafe extern "C" fn(Buffer);

/// Runs `f` on the JSON `input`, catching panics; returns the status and the reply bytes.
/// Used by [`export_plugin!`]; not meant to be called directly.
pub fn dispatch(
    input: &[u8],
    f: impl FnOnce(serde_json::Value) -> Result<serde_json::Value, String> + std::panic::UnwindSafe,
) -> (i32, Vec<u8>) {
    let value = match serde_json::from_slice::<serde_json::Value>(input) {
        Ok(v) => v,
        Err(e) => return (STATUS_ERROR, format!("input is not valid JSON: {e}").into_bytes()),
    };
    match std::panic::catch_unwind(move || f(value)) {
        Ok(Ok(out)) => match serde_json::to_vec(&out) {
            Ok(bytes) => (STATUS_OK, bytes),
            Err(e) => (STATUS_ERROR, format!("result is not serialisable: {e}").into_bytes()),
        },
        Ok(Err(message)) => (STATUS_ERROR, message.into_bytes()),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (STATUS_ERROR, format!("plugin panicked: {why}").into_bytes())
        }
    }
}

/// Exports `$function` (`fn(serde_json::Value) -> Result<serde_json::Value, String>`) as a
/// hookyard plugin called `$name`.
#[macro_export]
macro_rules! export_plugin {
    ($name:literal, $function:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn hookyard_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn hookyard_plugin_name() -> *const ::std::ffi::c_char {
            concat!($name, "\0").as_ptr().cast()
        }

        /// # Safety
        /// `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn hookyard_plugin_call(input: *const u8, len: usize, out: *mut $crate::Buffer) -> i32 {
            if out.is_null() {
                return $crate::STATUS_ERROR;
            }
            let bytes: &[u8] = if input.is_null() || len == 0 {
                &[]
            } else {
                // SAFETY: the host passes a pointer to `len` bytes it owns for the call.
                unsafe { ::std::slice::from_raw_parts(input, len) }
            };
            let (status, reply) = $crate::dispatch(bytes, $function);
            // SAFETY: `out` is non-null and points to the host's Buffer.
            unsafe { out.write($crate::Buffer::from_vec(reply)) };
            status
        }

        /// # Safety
        /// `buffer` must come from `hookyard_plugin_call` of this library, freed once.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn hookyard_plugin_free(buffer: $crate::Buffer) {
            // SAFETY: the buffer was made by Buffer::from_vec in this library.
            drop(unsafe { buffer.into_vec() });
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_reports_panics_and_errors_as_errors() {
        let (status, bytes) = dispatch(b"{}", |_| panic!("boom"));
        assert_eq!(status, STATUS_ERROR);
        assert_eq!(String::from_utf8(bytes).unwrap(), "plugin panicked: boom");
        let (status, bytes) = dispatch(b"{}", |_| Err("no meter".into()));
        assert_eq!((status, bytes.as_slice()), (STATUS_ERROR, b"no meter".as_slice()));
        let (status, bytes) = dispatch(b"not json", Ok);
        assert_eq!(status, STATUS_ERROR);
        assert!(String::from_utf8(bytes).unwrap().starts_with("input is not valid JSON"));
        let (status, bytes) = dispatch(br#"{"a":1}"#, Ok);
        assert_eq!((status, bytes.as_slice()), (STATUS_OK, br#"{"a":1}"#.as_slice()));
    }

    #[test]
    fn buffers_round_trip() {
        let buffer = Buffer::from_vec(b"hello".to_vec());
        // SAFETY: made just above by from_vec.
        assert_eq!(unsafe { buffer.into_vec() }, b"hello");
        // SAFETY: an empty buffer holds nothing to free.
        assert!(unsafe { Buffer::empty().into_vec() }.is_empty());
    }
}
