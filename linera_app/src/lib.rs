//! edgechain's model registry as a Linera application: the ABI (operations), the rules an
//! operation must follow (the same as `contract/operations.py` and `contract/registry.py`),
//! the entry the contract stores, and the seed derivation of `service/seed.py` (v2).

pub mod rules;
pub mod seed;

use async_graphql::{Request, Response};
use linera_sdk::linera_base_types::{ContractAbi, ServiceAbi};
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

/// The registry's operations (`RegisterModel` and `RetireModel` of contract/operations.py).
/// As JSON, `{"RegisterModel": {"name": ..., ...}}` and `{"RetireModel": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    RegisterModel(Registration),
    RetireModel { name: String, version: String },
}

impl Operation {
    /// The operation's name as the simulator spells it (for messages).
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::RegisterModel(_) => "RegisterModel",
            Operation::RetireModel { .. } => "RetireModel",
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
