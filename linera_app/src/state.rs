//! The application's state on each chain: the registry (one entry per model version, keyed by
//! "<name>/<version>"; the chain whose registry this one follows) and the story book's stories.

use edgechain_linera::{ModelEntry, Story};
use linera_sdk::{
    linera_base_types::ChainId,
    views::{linera_views, MapView, RegisterView, RootView, ViewStorageContext},
};

#[derive(RootView)]
#[view(context = ViewStorageContext)]
pub struct RegistryState {
    pub models: MapView<String, ModelEntry>,
    /// The chain whose registry this one follows (`FollowRegistry`), if any.
    pub following: RegisterView<Option<ChainId>>,
    /// Every story on this chain, by id.
    pub stories: MapView<u64, Story>,
    /// How many story ids this chain has given (the next is one more).
    pub story_ids: RegisterView<u64>,
}
