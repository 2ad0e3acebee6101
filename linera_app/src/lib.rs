//! edgechain's model registry as a Linera application: the ABI (operations, the cross-chain
//! message, the event stream's value), the rules an operation must follow (the same as
//! `contract/operations.py`, `contract/registry.py` and `contract/story_book.py`), the entry the
//! contract stores, and the seed derivation of `service/seed.py` (v2).
//!
//! The application also carries the story book's minimal cross-chain part ([`Story`],
//! `MintStory`, `Transfer`, [`Message::StoryMoves`]): on Linera a story's recipient checks its own
//! chain's registry, which one application reads without a cross-application call (docs/linera.md).

pub mod rules;
pub mod seed;

use async_graphql::{Request, Response};
use linera_sdk::linera_base_types::{AccountOwner, ChainId, ContractAbi, ServiceAbi};
use serde::{Deserialize, Serialize};

pub use rules::{validate_operation, validate_register, validate_retire, RuleError};

/// The application's ABI: registry operations in, nothing out; GraphQL for queries.
pub struct RegistryAbi;

impl ContractAbi for RegistryAbi {
    type Operation = Operation;
    type Response = ();
}

impl ServiceAbi for RegistryAbi {
    type Query = Request;
    type QueryResponse = Response;
}

/// A file the service will fetch: its BLAKE3 hash (hex), its size in bytes, where to get it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub blake3: String,
    pub size: u64,
    pub urls: Vec<String>,
}

/// What `RegisterModel` asks to register (the fields of contract/operations.py's operation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub name: String,
    pub version: String,
    pub format: String,
    pub weights: FileRef,
    pub tokenizer: FileRef,
    pub description: Option<String>,
    pub license: Option<String>,
}

/// The registry's operations (`RegisterModel` and `RetireModel` of contract/operations.py,
/// `FollowRegistry` of contract/registry.py) and the story book's (`MintStory`, `Transfer` of
/// contract/story_book.py). As JSON, `{"RegisterModel": {"name": ..., ...}}`,
/// `{"RetireModel": {...}}`, and so on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    RegisterModel(Registration),
    RetireModel {
        name: String,
        version: String,
    },
    /// Follow the registry of `chain`: subscribe to its [`MODELS_STREAM`].
    FollowRegistry {
        chain: ChainId,
    },
    /// Mint a story from a generation the proposer ran (its text and token count recorded).
    MintStory(Mint),
    /// Give story `story` to `owner`, on `chain` (None: this chain).
    Transfer {
        story: u64,
        owner: AccountOwner,
        chain: Option<ChainId>,
    },
}

/// What `MintStory` records: the query and the generation's text (the simulator's oracle
/// response also carries the token ids, their hash and the receipt's hash; see docs/linera.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mint {
    pub model: String,
    pub version: String,
    pub prompt: String,
    pub text: String,
    pub tokens: u32,
}

/// A minted story as the contract stores it (contract/story_book.py's `Story`, without the
/// oracle's fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Story {
    pub id: u64,
    pub owner: AccountOwner,
    pub model: String,
    pub version: String,
    pub prompt: String,
    pub text: String,
    pub tokens: u32,
    pub minted_height: u64,
}

/// The application's cross-chain message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A story leaving its chain (sent tracked): the story as it was there (its id and owner,
    /// restored if it bounces) and its owner on the recipient chain.
    StoryMoves {
        story: Story,
        to_owner: AccountOwner,
    },
}

/// The registry's event stream (contract/registry.py's `STREAM`): one [`ModelEntry`] per
/// registration and retirement, as the entry then stands.
pub const MODELS_STREAM: &str = "models";

impl Operation {
    /// The operation's name as the simulator spells it (for messages).
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::RegisterModel(_) => "RegisterModel",
            Operation::RetireModel { .. } => "RetireModel",
            Operation::FollowRegistry { .. } => "FollowRegistry",
            Operation::MintStory(_) => "MintStory",
            Operation::Transfer { .. } => "Transfer",
        }
    }
}

/// A registered model version as the contract stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// What the `RegisterModel` operation asked for.
    pub registration: Registration,
    pub registered_height: u64,
    /// The account owner that signed the registering block (Linera's `AccountOwner`).
    pub registered_by: String,
    pub retired_height: Option<u64>,
}

impl ModelEntry {
    /// The height of the block that made this entry what it is now.
    pub fn current_height(&self) -> u64 {
        self.retired_height.unwrap_or(self.registered_height)
    }

    /// What "the same bytes" means: both files' hashes and sizes (URLs may differ).
    pub fn same_files(&self, weights: &FileRef, tokenizer: &FileRef) -> bool {
        (
            &self.registration.weights.blake3,
            self.registration.weights.size,
            &self.registration.tokenizer.blake3,
            self.registration.tokenizer.size,
        ) == (
            &weights.blake3,
            weights.size,
            &tokenizer.blake3,
            tokenizer.size,
        )
    }
}

/// The state key of a model version (the simulator's `model/<name>/<version>`).
pub fn model_key(name: &str, version: &str) -> String {
    format!("{name}/{version}")
}
