//! The state a script run carries into the host functions: the call tag of one request's
//! events (`HostCall`) and what scripts can reach beyond the data directory (`Extensions`).

use std::sync::{Arc, Mutex};

use crate::output::{Catalog, Output};
use crate::plugin::Plugins;
use crate::store::Effect;

/// What scripts can reach beyond the data directory: plugins and outputs.
#[derive(Default)]
pub struct Extensions {
    pub plugins: Plugins,
    /// The declared outputs; `None` when the host runs without them (dry runs).
    pub catalog: Option<Arc<Catalog>>,
}

/// Per-request state the host functions reach through the call tag.
#[derive(Clone)]
pub struct HostCall {
    pub(crate) protocol: String,
    pub(crate) effects: Arc<Mutex<Vec<Effect>>>,
    pub(crate) outputs: Arc<Mutex<Vec<Output>>>,
    pub(crate) logs: Arc<Mutex<Vec<String>>>,
    pub(crate) blob: Option<bytes::Bytes>,
    pub(crate) ext: Arc<Extensions>,
}
