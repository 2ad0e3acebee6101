//! The registry's contract: `RegisterModel` and `RetireModel`, owner-only, with the rules and
//! messages of contract/registry.py. A broken rule panics, which rejects the block (Linera's way
//! of failing an operation); the message is the simulator's.

#![cfg_attr(target_arch = "wasm32", no_main)]

mod state;

use edgechain_linera::{model_key, validate_operation, ModelEntry, Operation, RegistryAbi};
use linera_sdk::{
    linera_base_types::{AccountOwner, WithContractAbi},
    views::{RootView, View},
    Contract, ContractRuntime,
};

use self::state::RegistryState;

linera_sdk::contract!(RegistryContract);

pub struct RegistryContract {
    state: RegistryState,
    runtime: ContractRuntime<Self>,
}

impl WithContractAbi for RegistryContract {
    type Abi = RegistryAbi;
}

fn short(owner: &AccountOwner) -> String {
    owner.to_string().chars().take(16).collect()
}

impl Contract for RegistryContract {
    type Message = ();
    type InstantiationArgument = ();
    type Parameters = ();
    type EventValue = ();

    async fn load(runtime: ContractRuntime<Self>) -> Self {
        let state = RegistryState::load(runtime.root_view_storage_context())
            .await
            .expect("failed to load the registry state");
        RegistryContract { state, runtime }
    }

    async fn instantiate(&mut self, _argument: ()) {
        self.runtime.application_parameters();
    }

    async fn execute_operation(&mut self, operation: Operation) {
        let signer = self.check_owner(operation.kind());
        let outcome = match validate_operation(&operation) {
            Err(rule) => Err(rule.0),
            Ok(()) => match operation {
                Operation::RegisterModel(registration) => {
                    let entry = ModelEntry {
                        registration,
                        registered_height: self.runtime.block_height().0,
                        registered_by: signer.to_string(),
                        retired_height: None,
                    };
                    self.register(entry).await
                }
                Operation::RetireModel { name, version } => self.retire(&name, &version).await,
            },
        };
        if let Err(message) = outcome {
            panic!("{message}");
        }
    }

    async fn execute_message(&mut self, _message: ()) {
        panic!("model-registry does not use cross-chain messages");
    }

    async fn store(self) {
        self.state
            .save_and_drop()
            .await
            .expect("failed to save the registry state");
    }
}

impl RegistryContract {
    /// The block's signer, if it is an owner of this chain (the simulator's `signed_by_owner`).
    fn check_owner(&mut self, operation: &str) -> AccountOwner {
        let ownership = self.runtime.chain_ownership();
        let signer = self.runtime.authenticated_signer();
        match signer {
            Some(owner)
                if ownership.super_owners.contains(&owner)
                    || ownership.owners.contains_key(&owner) =>
            {
                owner
            }
            _ => {
                let owner = ownership
                    .super_owners
                    .iter()
                    .chain(ownership.owners.keys())
                    .next()
                    .map_or_else(|| "(none)".to_owned(), short);
                let signer = signer.as_ref().map_or_else(|| "(nobody)".to_owned(), short);
                panic!("{operation} must be signed by the chain owner {owner}, not {signer}");
            }
        }
    }

    async fn register(&mut self, entry: ModelEntry) -> Result<(), String> {
        let key = model_key(&entry.registration.name, &entry.registration.version);
        let existing = self
            .state
            .models
            .get(&key)
            .await
            .expect("registry state unreadable");
        if let Some(existing) = existing {
            if !existing.same_files(&entry.registration.weights, &entry.registration.tokenizer) {
                return Err(format!(
                    "model {} version {} is already registered with other bytes; register a new \
                     version",
                    entry.registration.name, entry.registration.version
                ));
            }
            if let Some(height) = existing.retired_height {
                return Err(format!(
                    "model {} version {} was retired at height {height}; register a new version",
                    entry.registration.name, entry.registration.version
                ));
            }
            return Ok(()); // same bytes again: nothing changes
        }
        self.state
            .models
            .insert(&key, entry)
            .expect("registry state unwritable");
        Ok(())
    }

    async fn retire(&mut self, name: &str, version: &str) -> Result<(), String> {
        let key = model_key(name, version);
        let height = self.runtime.block_height().0;
        let entry = self
            .state
            .models
            .get_mut(&key)
            .await
            .expect("registry state unreadable");
        let Some(entry) = entry else {
            return Err(format!("model {name} version {version} is not registered"));
        };
        if let Some(retired) = entry.retired_height {
            return Err(format!(
                "model {name} version {version} is already retired (height {retired})"
            ));
        }
        entry.retired_height = Some(height);
        Ok(())
    }
}
