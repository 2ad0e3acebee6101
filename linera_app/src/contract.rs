//! The application's contract: the registry's `RegisterModel`, `RetireModel` and
//! `FollowRegistry`, owner-only, with the rules and messages of contract/registry.py, and the
//! story book's `MintStory` and `Transfer` with its `StoryMoves` message (contract/story_book.py).
//! A broken rule panics, which rejects the block (Linera's way of failing an operation), or, in
//! a message, rejects the message (a tracked one bounces); the message is the simulator's.
//!
//! Each registration and retirement is emitted on the `models` stream; a registry that follows
//! another chain's subscribes to that stream and certifies each event's entry in the block that
//! processes it (`process_streams`), as the simulator's follower does with each `ModelUpdate`.

#![cfg_attr(target_arch = "wasm32", no_main)]

mod state;

use edgechain_linera::{
    model_key, validate_operation, Message, Mint, ModelEntry, Operation, RegistryAbi, Story,
    MODELS_STREAM,
};
use linera_sdk::{
    linera_base_types::{AccountOwner, ChainId, StreamName, StreamUpdate, WithContractAbi},
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
    type Message = Message;
    type InstantiationArgument = ();
    type Parameters = ();
    type EventValue = ModelEntry;

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
        let is_registry = !matches!(
            operation,
            Operation::MintStory(_) | Operation::Transfer { .. }
        );
        // The registry checks its signer first, then the rules (contract/registry.py).
        let signer = is_registry.then(|| self.check_owner(operation.kind()));
        if let Err(rule) = validate_operation(&operation) {
            panic!("{}", rule.0);
        }
        let outcome = match operation {
            Operation::MintStory(mint) => self.mint(mint).await,
            Operation::Transfer {
                story,
                owner,
                chain,
            } => self.transfer(story, owner, chain).await,
            registry_operation => {
                let signer = signer.expect("the registry's signer was checked");
                self.execute_registry(registry_operation, signer).await
            }
        };
        if let Err(message) = outcome {
            panic!("{message}");
        }
    }

    async fn execute_message(&mut self, message: Message) {
        let Message::StoryMoves { story, to_owner } = message;
        if self.runtime.message_is_bouncing() == Some(true) {
            // Refused there: back to its owner here, under its old id.
            self.state
                .stories
                .insert(&{ story.id }, story)
                .expect("story state unwritable");
            return;
        }
        let key = model_key(&story.model, &story.version);
        if self.registered(&key).await.is_none() {
            panic!(
                "this chain's registry does not certify {} version {}",
                story.model, story.version
            );
        }
        let id = self.next_story_id();
        let arrived = Story {
            id,
            owner: to_owner,
            ..story
        };
        self.state
            .stories
            .insert(&id, arrived)
            .expect("story state unwritable");
    }

    async fn process_streams(&mut self, updates: Vec<StreamUpdate>) {
        let following = *self.state.following.get();
        let models: StreamName = MODELS_STREAM.into();
        for update in updates {
            if Some(update.chain_id) != following || update.stream_id.stream_name != models {
                continue; // never subscribed to: nothing of this application's
            }
            for index in update.new_indices() {
                let entry = self
                    .runtime
                    .read_event(update.chain_id, models.clone(), index);
                self.certify_update(entry).await;
            }
        }
    }

    async fn store(self) {
        self.state
            .save_and_drop()
            .await
            .expect("failed to save the registry state");
    }
}

impl RegistryContract {
    /// The registry's operations, owner-only.
    async fn execute_registry(
        &mut self,
        operation: Operation,
        signer: AccountOwner,
    ) -> Result<(), String> {
        match operation {
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
            Operation::FollowRegistry { chain } => self.follow(chain),
            Operation::MintStory(_) | Operation::Transfer { .. } => {
                unreachable!("story operations are not the registry's")
            }
        }
    }

    fn follow(&mut self, chain: ChainId) -> Result<(), String> {
        if chain == self.runtime.chain_id() {
            return Err("a registry cannot follow its own chain".into());
        }
        if let Some(followed) = self.state.following.get() {
            let followed: String = followed.to_string().chars().take(16).collect();
            return Err(format!("this registry already follows chain {followed}"));
        }
        self.state.following.set(Some(chain));
        let application = self.runtime.application_id().forget_abi();
        self.runtime
            .subscribe_to_events(chain, application, MODELS_STREAM.into());
        Ok(())
    }

    /// A followed registry's entry, certified here by this block: its heights are this chain's.
    async fn certify_update(&mut self, update: ModelEntry) {
        let key = model_key(&update.registration.name, &update.registration.version);
        let height = self.runtime.block_height().0;
        let here = self.registered(&key).await;
        let mut here = here.unwrap_or_else(|| ModelEntry {
            registered_height: height,
            retired_height: None,
            ..update.clone()
        });
        if update.retired_height.is_some() && here.retired_height.is_none() {
            here.retired_height = Some(height);
        }
        self.state
            .models
            .insert(&key, here)
            .expect("registry state unwritable");
    }

    /// The registry's entry under `key` (`model_key`), if any.
    async fn registered(&self, key: &str) -> Option<ModelEntry> {
        self.state
            .models
            .get(key)
            .await
            .expect("registry state unreadable")
    }

    /// Announces an entry as it now stands on the registry's stream.
    fn announce(&mut self, entry: &ModelEntry) {
        self.runtime.emit(MODELS_STREAM.into(), entry);
    }

    fn next_story_id(&mut self) -> u64 {
        let id = *self.state.story_ids.get() + 1;
        self.state.story_ids.set(id);
        id
    }

    async fn mint(&mut self, mint: Mint) -> Result<(), String> {
        let Some(owner) = self.runtime.authenticated_signer() else {
            return Err("MintStory must be signed".into());
        };
        // What the simulator's oracle resolves before minting: a certified, active version.
        let key = model_key(&mint.model, &mint.version);
        let entry = self.registered(&key).await;
        match entry {
            None => {
                return Err(format!(
                    "no model {} version {} in certified state",
                    mint.model, mint.version
                ))
            }
            Some(entry) if entry.retired_height.is_some() => {
                return Err(format!(
                    "model {} version {} was retired at height {}",
                    mint.model,
                    mint.version,
                    entry.current_height()
                ))
            }
            Some(_) => {}
        }
        let id = self.next_story_id();
        let story = Story {
            id,
            owner,
            model: mint.model,
            version: mint.version,
            prompt: mint.prompt,
            text: mint.text,
            tokens: mint.tokens,
            minted_height: self.runtime.block_height().0,
        };
        self.state
            .stories
            .insert(&id, story)
            .expect("story state unwritable");
        Ok(())
    }

    async fn transfer(
        &mut self,
        id: u64,
        owner: AccountOwner,
        chain: Option<ChainId>,
    ) -> Result<(), String> {
        let story = self
            .state
            .stories
            .get(&id)
            .await
            .expect("story state unreadable");
        let Some(mut story) = story else {
            return Err(format!("there is no story {id}"));
        };
        let signer = self.runtime.authenticated_signer();
        if signer != Some(story.owner) {
            let signer = signer.as_ref().map_or_else(|| "(nobody)".to_owned(), short);
            return Err(format!(
                "story {id} belongs to {}, not to the signer {signer}",
                short(&story.owner)
            ));
        }
        match chain {
            Some(chain) if chain != self.runtime.chain_id() => {
                self.state
                    .stories
                    .remove(&id)
                    .expect("story state unwritable");
                self.runtime
                    .prepare_message(Message::StoryMoves {
                        story,
                        to_owner: owner,
                    })
                    .with_tracking()
                    .send_to(chain);
            }
            _ => {
                story.owner = owner;
                self.state
                    .stories
                    .insert(&id, story)
                    .expect("story state unwritable");
            }
        }
        Ok(())
    }

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
        let existing = self.registered(&key).await;
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
        self.announce(&entry);
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
        let retired = entry.clone();
        self.announce(&retired);
        Ok(())
    }
}
