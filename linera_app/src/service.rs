//! The registry's service: the node's registry GraphQL for models (`models`, `model`), the
//! project's `generate`, Linera's llm example's `prompt(prompt:)`, and the story book's
//! `stories(owner:)` and the registry's `following`.
//!
//! `generate` fetches the model's files with Linera's HTTP request API (the committee's
//! allow-list applies), checks each file's BLAKE3 and size before the engine sees a byte, and
//! runs the project's engine (rust_guest). Its derived seed follows service/seed.py (v2).

#![cfg_attr(target_arch = "wasm32", no_main)]

mod state;

use std::sync::Arc;

use async_graphql::{
    EmptySubscription, Error, ErrorExtensions, InputObject, InputValueError, InputValueResult,
    Object, Request, Response, Scalar, ScalarType, Schema, SimpleObject, Value,
};
use edgechain_guest::{
    chat_template::Message, EngineError, GenerationParams, LoadedModel, Session, StopReason,
};
use edgechain_linera::{
    rules::{MAX_PROMPT_BYTES, ROLES},
    seed::{SeedInput, SeedParams},
    FileRef, ModelEntry, Operation, Registration, RegistryAbi, Story,
};
use linera_sdk::{
    http,
    linera_base_types::WithServiceAbi,
    views::{MapView, View},
    Service, ServiceRuntime,
};
use serde::{de::DeserializeOwned, Serialize};

use self::state::RegistryState;

linera_sdk::service!(RegistryService);

pub struct RegistryService {
    state: RegistryState,
    runtime: Arc<ServiceRuntime<Self>>,
}

impl WithServiceAbi for RegistryService {
    type Abi = RegistryAbi;
}

/// Every value of `map`, in one read (the registry and the story book are small: a query is
/// answered from memory); `what` names the state in the panic when it cannot be read.
async fn all_values<I, V>(map: &MapView<I, V>, what: &str) -> Vec<V>
where
    I: Send + DeserializeOwned,
    V: Clone + Sync + Send + Serialize + DeserializeOwned + 'static,
{
    map.index_values()
        .await
        .unwrap_or_else(|err| panic!("{what} state unreadable: {err:?}"))
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

impl Service for RegistryService {
    type Parameters = ();

    async fn new(runtime: ServiceRuntime<Self>) -> Self {
        let state = RegistryState::load(runtime.root_view_storage_context())
            .await
            .expect("failed to load the registry state");
        RegistryService {
            state,
            runtime: Arc::new(runtime),
        }
    }

    async fn handle_query(&self, request: Request) -> Response {
        // The registry is small: read it once, then answer from memory.
        let entries = all_values(&self.state.models, "registry").await;
        let chain_id = self.runtime.chain_id().to_string();
        let application_id = self.runtime.application_id().forget_abi().to_string();
        let registry = Registry {
            entries,
            chain_id,
            application_id,
        };
        let mut stories = all_values(&self.state.stories, "story").await;
        stories.sort_by_key(|story| story.id);
        let following = self.state.following.get().map(|chain| chain.to_string());
        let schema = Schema::build(
            QueryRoot {
                registry,
                stories,
                following,
                runtime: self.runtime.clone(),
            },
            MutationRoot {
                runtime: self.runtime.clone(),
            },
            EmptySubscription,
        )
        .finish();
        schema.execute(request).await
    }
}

/// A GraphQL error with the simulator's error class as `extensions.code`.
fn typed(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, ext| ext.set("code", code))
}

/// The node's `U64` scalar: a decimal string out; a decimal string or a number in.
#[derive(Clone, Copy, Debug)]
struct U64(u64);

#[Scalar(name = "U64")]
impl ScalarType for U64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse()
                .map(U64)
                .map_err(|_| InputValueError::expected_type(value.clone())),
            Value::Number(n) => n
                .as_u64()
                .map(U64)
                .ok_or_else(|| InputValueError::expected_type(value.clone())),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[derive(SimpleObject)]
struct FileInfo {
    blake3: String,
    size: U64,
    urls: Vec<String>,
}

impl From<&FileRef> for FileInfo {
    fn from(file: &FileRef) -> Self {
        FileInfo {
            blake3: file.blake3.clone(),
            size: U64(file.size),
            urls: file.urls.clone(),
        }
    }
}

/// The node's `Model`. Linera has no certificates in a service's view: `blockHash` is null and
/// `signers` empty; `height` is the block that made the entry current.
#[derive(SimpleObject)]
struct Model {
    name: String,
    version: String,
    format: String,
    description: Option<String>,
    license: Option<String>,
    retired: bool,
    registered_height: u64,
    retired_height: Option<u64>,
    registered_by: String,
    weights: FileInfo,
    tokenizer: FileInfo,
    chain_id: String,
    application_id: String,
    height: u64,
    block_hash: Option<String>,
    signers: Vec<String>,
}

#[derive(SimpleObject)]
struct GenerationResult {
    text: String,
    stop_reason: String,
    input_tokens: u64,
    output_tokens: u64,
    seed: U64,
    seed_source: String,
    model: Model,
}

/// One message of a dialogue (edgechain/chat_message.py's `ChatMessage`), as GraphQL takes it:
/// the engine's `Message` from here on.
#[derive(InputObject)]
struct MessageInput {
    role: String,
    content: String,
}

impl From<MessageInput> for Message {
    fn from(input: MessageInput) -> Self {
        Message {
            role: input.role,
            content: input.content,
        }
    }
}

#[derive(InputObject)]
struct FileInput {
    blake3: String,
    size: U64,
    urls: Vec<String>,
}

struct Registry {
    entries: Vec<ModelEntry>,
    chain_id: String,
    application_id: String,
}

impl Registry {
    fn model(&self, entry: &ModelEntry) -> Model {
        Model {
            name: entry.registration.name.clone(),
            version: entry.registration.version.clone(),
            format: entry.registration.format.clone(),
            description: entry.registration.description.clone(),
            license: entry.registration.license.clone(),
            retired: entry.retired_height.is_some(),
            registered_height: entry.registered_height,
            retired_height: entry.retired_height,
            registered_by: entry.registered_by.clone(),
            weights: (&entry.registration.weights).into(),
            tokenizer: (&entry.registration.tokenizer).into(),
            chain_id: self.chain_id.clone(),
            application_id: self.application_id.clone(),
            height: entry.current_height(),
            block_hash: None,
            signers: Vec::new(),
        }
    }

    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.registration.name.as_str())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn unknown_name(&self, name: &str) -> Error {
        let message = format!("no model named {name} in certified state");
        let names = self.names();
        if names.is_empty() {
            return typed(
                "ModelNotFound",
                format!("{message}; none is registered yet (publish one: edgechain model publish)"),
            );
        }
        typed(
            "ModelNotFound",
            format!("{message} (registered: {})", names.join(", ")),
        )
    }

    /// The simulator's `query_model`: a version, or the name's latest active version.
    fn find(&self, name: &str, version: Option<&str>) -> Result<&ModelEntry, Error> {
        let of_name: Vec<&ModelEntry> = self
            .entries
            .iter()
            .filter(|e| e.registration.name == name)
            .collect();
        if of_name.is_empty() {
            return Err(self.unknown_name(name));
        }
        match version {
            Some(version) => {
                let Some(entry) = of_name.iter().find(|e| e.registration.version == version) else {
                    let mut versions: Vec<&str> = of_name
                        .iter()
                        .map(|e| e.registration.version.as_str())
                        .collect();
                    versions.sort();
                    return Err(typed(
                        "ModelNotFound",
                        format!(
                            "no model {name} version {version} in certified state (versions of \
                             {name}: {})",
                            versions.join(", ")
                        ),
                    ));
                };
                if let Some(height) = entry.retired_height {
                    return Err(typed(
                        "ModelRetired",
                        format!("model {name} version {version} was retired at height {height}"),
                    ));
                }
                Ok(entry)
            }
            None => of_name
                .into_iter()
                .filter(|e| e.retired_height.is_none())
                .max_by_key(|e| e.registered_height)
                .ok_or_else(|| {
                    typed(
                        "ModelRetired",
                        format!("every version of model {name} is retired"),
                    )
                }),
        }
    }
}

struct QueryRoot {
    registry: Registry,
    /// This chain's stories, in id order.
    stories: Vec<Story>,
    following: Option<String>,
    runtime: Arc<ServiceRuntime<RegistryService>>,
}

/// A `generate` query's arguments, as the node's `generate` takes them.
struct GenerateArgs {
    model: String,
    prompt: String,
    /// The messages of generate's chat form.
    messages: Option<Vec<Message>>,
    version: Option<String>,
    max_tokens: i64,
    temperature: f64,
    top_p: f64,
    repeat_penalty: f64,
    repeat_window: i64,
    stop: Vec<String>,
    seed: Option<u64>,
}

impl GenerateArgs {
    /// service/query.py's checks (the same bounds; messages name the argument).
    fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(typed("InvalidParameter", m));
        if !(1..=i32::MAX as i64).contains(&self.max_tokens) {
            return bad(format!(
                "max_tokens must be between 1 and {}, got {}",
                i32::MAX,
                self.max_tokens
            ));
        }
        for (name, value) in [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("repeat_penalty", self.repeat_penalty),
        ] {
            if !value.is_finite() {
                return bad(format!("{name} must be finite, got {value}"));
            }
        }
        if self.temperature < 0.0 {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be > 0 and <= 1, got {}", self.top_p));
        }
        if self.repeat_penalty < 1.0 {
            return bad(format!(
                "repeat_penalty must be >= 1, got {}",
                self.repeat_penalty
            ));
        }
        if !(0..=i32::MAX as i64).contains(&self.repeat_window) {
            return bad(format!(
                "repeat_window must be between 0 and {}, got {}",
                i32::MAX,
                self.repeat_window
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop: strings must not be empty".into());
        }
        if let Some(messages) = &self.messages {
            if messages.is_empty() {
                return bad("messages: the list is empty (give at least one message)".into());
            }
            for (i, Message { role, .. }) in messages.iter().enumerate() {
                if !ROLES.contains(&role.as_str()) {
                    return bad(format!(
                        "messages[{i}].role must be one of {}, got {role:?}",
                        ROLES.join(", ")
                    ));
                }
            }
            let size: usize = messages
                .iter()
                .map(|m| m.role.len() + m.content.len())
                .sum();
            if size > MAX_PROMPT_BYTES {
                return bad(format!("messages is longer than {MAX_PROMPT_BYTES} bytes"));
            }
            if !self.prompt.is_empty() {
                return bad("give either a prompt or messages, not both".into());
            }
        }
        Ok(())
    }
}

/// The node's `Story` (contract/story_book.py's fields this application records).
#[derive(SimpleObject)]
struct StoryInfo {
    id: U64,
    owner: String,
    model: String,
    version: String,
    prompt: String,
    text: String,
    tokens: u32,
    minted_height: U64,
}

impl From<&Story> for StoryInfo {
    fn from(story: &Story) -> Self {
        StoryInfo {
            id: U64(story.id),
            owner: story.owner.to_string(),
            model: story.model.clone(),
            version: story.version.clone(),
            prompt: story.prompt.clone(),
            text: story.text.clone(),
            tokens: story.tokens,
            minted_height: U64(story.minted_height),
        }
    }
}

#[Object]
impl QueryRoot {
    /// The stories on this chain in id order, or those of `owner`.
    async fn stories(&self, owner: Option<String>) -> Vec<StoryInfo> {
        self.stories
            .iter()
            .filter(|story| owner.as_ref().is_none_or(|o| *o == story.owner.to_string()))
            .map(StoryInfo::from)
            .collect()
    }

    /// The chain whose registry this one follows, if any.
    async fn following(&self) -> Option<String> {
        self.following.clone()
    }

    /// Every registered model version (retired ones too, unless told).
    async fn models(&self, #[graphql(default = true)] include_retired: bool) -> Vec<Model> {
        let mut entries: Vec<&ModelEntry> = self
            .registry
            .entries
            .iter()
            .filter(|e| include_retired || e.retired_height.is_none())
            .collect();
        entries.sort_by(|a, b| {
            (
                &a.registration.name,
                a.registered_height,
                &a.registration.version,
            )
                .cmp(&(
                    &b.registration.name,
                    b.registered_height,
                    &b.registration.version,
                ))
        });
        entries
            .into_iter()
            .map(|e| self.registry.model(e))
            .collect()
    }

    /// A model by name: its latest active version, or the version.
    async fn model(&self, name: String, version: Option<String>) -> Result<Model, Error> {
        let entry = self.registry.find(&name, version.as_deref())?;
        Ok(self.registry.model(entry))
    }

    /// Generate text with a registered model (the node's `generate`, without timings).
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        model: String,
        #[graphql(default = "")] prompt: String,
        messages: Option<Vec<MessageInput>>,
        version: Option<String>,
        #[graphql(default = 256)] max_tokens: i64,
        #[graphql(default = 0.8)] temperature: f64,
        #[graphql(default = 0.9)] top_p: f64,
        #[graphql(default = 1.0)] repeat_penalty: f64,
        #[graphql(default = 64)] repeat_window: i64,
        #[graphql(default)] stop: Vec<String>,
        seed: Option<U64>,
    ) -> Result<GenerationResult, Error> {
        let args = GenerateArgs {
            model,
            prompt,
            messages: messages.map(|m| m.into_iter().map(Message::from).collect()),
            version,
            max_tokens,
            temperature,
            top_p,
            repeat_penalty,
            repeat_window,
            stop,
            seed: seed.map(|s| s.0),
        };
        self.run(args)
    }

    /// Linera's llm example query: the latest registered active model continues `prompt`.
    async fn prompt(&self, prompt: String) -> Result<String, Error> {
        let latest = self
            .registry
            .entries
            .iter()
            .filter(|e| e.retired_height.is_none())
            .max_by_key(|e| e.registered_height)
            .ok_or_else(|| typed("ModelNotFound", "no active model is registered"))?;
        let args = GenerateArgs {
            model: latest.registration.name.clone(),
            prompt,
            messages: None,
            version: Some(latest.registration.version.clone()),
            max_tokens: 256,
            temperature: 0.8,
            top_p: 0.9,
            repeat_penalty: 1.0,
            repeat_window: 64,
            stop: Vec::new(),
            seed: None,
        };
        Ok(self.run(args)?.text)
    }
}

impl QueryRoot {
    fn run(&self, args: GenerateArgs) -> Result<GenerationResult, Error> {
        args.check()?;
        let entry = self.registry.find(&args.model, args.version.as_deref())?;
        let (seed, seed_source) = match args.seed {
            Some(seed) => (seed, "query"),
            None => {
                // Linera gives a service no block hash: the block is named by its height.
                let block = format!("height:{}", entry.current_height());
                let params = SeedParams {
                    temperature: args.temperature,
                    top_p: args.top_p,
                    repeat_penalty: args.repeat_penalty,
                    repeat_window: args.repeat_window as u64,
                };
                let messages: Option<Vec<(&str, &str)>> = args.messages.as_ref().map(|m| {
                    m.iter()
                        .map(|m| (m.role.as_str(), m.content.as_str()))
                        .collect()
                });
                let seed = SeedInput {
                    chain_id: &self.registry.chain_id,
                    block: &block,
                    application_id: &self.registry.application_id,
                    model: &entry.registration.name,
                    version: &entry.registration.version,
                    prompt: &args.prompt,
                    messages: messages.as_deref(),
                    params,
                }
                .derive_seed();
                (seed, "derived")
            }
        };
        let weights = self.fetch(&entry.registration.weights, "weights")?;
        let tokenizer = self.fetch(&entry.registration.tokenizer, "tokenizer")?;
        let engine_error = |e: EngineError| typed(engine_error_code(&e), e.to_string());
        let model = Arc::new(LoadedModel::load(&weights, &tokenizer).map_err(engine_error)?);
        drop((weights, tokenizer));
        #[allow(clippy::needless_update)]
        let params = GenerationParams {
            temperature: args.temperature,
            top_p: args.top_p,
            seed,
            max_tokens: Some(args.max_tokens as usize),
            max_positions: None,
            repeat_penalty: args.repeat_penalty,
            repeat_window: args.repeat_window as usize,
            stop: args.stop.clone(),
            // Fields the engine may gain later keep their defaults.
            ..GenerationParams::default()
        };
        let mut session = match &args.messages {
            // Generate's chat form: the model's chat template renders the messages.
            Some(messages) => Session::start_messages(model, messages.clone(), &params),
            None => Session::start(model, &args.prompt, &params),
        }
        .map_err(engine_error)?;
        let mut bytes = Vec::new();
        while let Some((_token, piece)) = session.step().map_err(engine_error)? {
            bytes.extend_from_slice(&piece);
        }
        let stop_reason = match session.stop_reason() {
            StopReason::EndOfSequence => "end_of_sequence",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopString => "stop_string",
            StopReason::ContextFull => "context_full",
            StopReason::Running => "unknown",
        };
        Ok(GenerationResult {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            stop_reason: stop_reason.into(),
            input_tokens: session.prompt_tokens() as u64,
            output_tokens: session.generated_tokens() as u64,
            seed: U64(seed),
            seed_source: seed_source.into(),
            model: self.registry.model(entry),
        })
    }

    /// The file's bytes from its first URL that answers with them; none reaches the engine
    /// unless its size and BLAKE3 hash are the registered ones.
    fn fetch(&self, file: &FileRef, what: &str) -> Result<Vec<u8>, Error> {
        let mut failures = Vec::new();
        for url in &file.urls {
            let response = self.runtime.http_request(http::Request::get(url.clone()));
            if response.status != 200 {
                failures.push(format!("{url}: HTTP {}", response.status));
                continue;
            }
            let body = response.body;
            if body.len() as u64 != file.size {
                failures.push(format!(
                    "{url}: {} bytes, expected {}",
                    body.len(),
                    file.size
                ));
                continue;
            }
            let hash = blake3::hash(&body).to_hex();
            if hash.as_str() != file.blake3 {
                return Err(typed(
                    "HashMismatch",
                    format!(
                        "{what} from {url}: BLAKE3 {hash} is not the registered {}",
                        file.blake3
                    ),
                ));
            }
            return Ok(body);
        }
        Err(typed(
            "FetchError",
            format!("cannot fetch the {what}: {}", failures.join("; ")),
        ))
    }
}

/// The simulator's error class for an engine error.
fn engine_error_code(error: &EngineError) -> &'static str {
    match error {
        EngineError::InvalidArgument(_) => "InvalidParameter",
        EngineError::InvalidCheckpoint(_) => "InvalidCheckpoint",
        EngineError::InvalidTokenizer(_) => "InvalidTokenizer",
        EngineError::VocabMismatch(_) => "VocabMismatch",
        EngineError::PromptTooLong(_) => "PromptTooLong",
        EngineError::ContextFull(_) => "ContextFull",
        EngineError::ChatTemplate(_) => "ChatTemplateError",
        _ => "EngineInternalError",
    }
}

struct MutationRoot {
    runtime: Arc<ServiceRuntime<RegistryService>>,
}

#[Object]
impl MutationRoot {
    /// Schedule a `RegisterModel` operation in the chain's next block.
    #[allow(clippy::too_many_arguments)]
    async fn publish_model(
        &self,
        name: String,
        weights: FileInput,
        tokenizer: FileInput,
        #[graphql(default = "1")] version: String,
        description: Option<String>,
        license: Option<String>,
    ) -> bool {
        let file = |f: FileInput| FileRef {
            blake3: f.blake3,
            size: f.size.0,
            urls: f.urls,
        };
        self.runtime
            .schedule_operation(&Operation::RegisterModel(Registration {
                name,
                version,
                format: "llama2c".into(),
                weights: file(weights),
                tokenizer: file(tokenizer),
                description,
                license,
            }));
        true
    }

    /// Schedule a `RetireModel` operation in the chain's next block.
    async fn retire_model(&self, name: String, version: String) -> bool {
        self.runtime
            .schedule_operation(&Operation::RetireModel { name, version });
        true
    }
}
