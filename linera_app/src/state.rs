//! The registry's state: one entry per model version, keyed by "<name>/<version>".

use edgechain_linera::ModelEntry;
use linera_sdk::views::{linera_views, MapView, RootView, ViewStorageContext};

#[derive(RootView)]
#[view(context = ViewStorageContext)]
pub struct RegistryState {
    pub models: MapView<String, ModelEntry>,
}
