//! The registry application on Linera's TestValidator (the application built for wasm32 and run
//! by wasmer), against tests/conformance.json: the same operations as the simulator, the same
//! accepted and rejected ones, the same registry and query errors, and greedy `generate` on
//! stories260K printing llama2.c's text byte for byte. Then on two more chains ([`cross_chain`]):
//! bob's registry following this one's event stream, a story moving to bob's chain, and one
//! bouncing off carol's, whose registry does not certify its model. The model files are served over loopback
//! by linera-sdk's test `HttpServer`, whose host the committee's HTTP allow-list names.
//!
//! Environment: `EDGECHAIN_STORIES_DIR` (default ../../shared/models/stories260K) and
//! `EDGECHAIN_CONFORMANCE_OUT`, a JSON file where the Linera side's outcomes are written for
//! tests/test_linera_app.py to compare with the simulator's.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::{path::PathBuf, sync::Arc, time::Instant};

use edgechain_guest::{GenerationParams, LoadedModel, Session};
use edgechain_linera::{validate_operation, FileRef, Mint, Operation, Registration, RegistryAbi};
use linera_sdk::{
    linera_base_types::{AccountOwner, AccountSecretKey, ApplicationId},
    test::{ActiveChain, MessageAction, TestValidator},
};
use serde_json::{json, Value};

const PROMPT: &str = "Once upon a time";

fn stories_dir() -> PathBuf {
    std::env::var_os("EDGECHAIN_STORIES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/stories260K")
        })
}

/// The operation of a conformance step, its `$weights`/`$tokenizer` made real.
fn operation(step: &Value, weights: &Value, tokenizer: &Value) -> Operation {
    let mut payload = step["payload"].clone();
    for (key, file) in [("weights", weights), ("tokenizer", tokenizer)] {
        match payload.get(key).and_then(Value::as_str) {
            Some("$weights") | Some("$tokenizer") => payload[key] = file.clone(),
            _ => {}
        }
    }
    let op = step["op"].as_str().expect("op");
    serde_json::from_value(json!({ op: payload })).expect("a registry operation")
}

/// The message of the first validation rule `op` breaks, if any.
fn rule_error(op: &Operation) -> Option<String> {
    validate_operation(op).err().map(|e| e.0)
}

/// llama2.c's run (`-t 0 -n 256 -i PROMPT`) on the native engine: the number of generated
/// tokens, so `generate` can be asked for exactly those.
fn golden_token_count(weights: &[u8], tokenizer: &[u8]) -> usize {
    let model = Arc::new(LoadedModel::load(weights, tokenizer).expect("stories260K loads"));
    let params = GenerationParams {
        temperature: 0.0,
        max_positions: Some(256),
        ..GenerationParams::default()
    };
    let mut session = Session::start(model, PROMPT, &params).expect("session");
    while session.step().expect("step").is_some() {}
    session.generated_tokens()
}

async fn query(
    chain: &ActiveChain,
    app: linera_sdk::linera_base_types::ApplicationId<RegistryAbi>,
    q: &str,
) -> Value {
    let outcome = chain.query(app, async_graphql::Request::new(q)).await;
    serde_json::to_value(&outcome.response).expect("a GraphQL response as JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_and_generate_conform_to_the_simulator() {
    let spec: Value =
        serde_json::from_str(include_str!("conformance.json")).expect("conformance.json");
    let dir = stories_dir();
    let weights = std::fs::read(dir.join("stories260K.bin")).expect("stories260K.bin");
    let tokenizer = std::fs::read(dir.join("tok512.bin")).expect("tok512.bin");
    let golden = std::fs::read_to_string(dir.join("greedy_once_upon_a_time_256.txt"))
        .expect("the golden text");

    let (server, refs) = common::serve(vec![
        ("stories260K.bin", weights.clone()),
        ("tok512.bin", tokenizer.clone()),
    ])
    .await;
    let weights_ref = serde_json::to_value(&refs[0]).expect("a file reference as JSON");
    let tokenizer_ref = serde_json::to_value(&refs[1]).expect("a file reference as JSON");

    let common::Registry {
        validator,
        mut chain,
        app,
        publish_seconds: build_s,
    } = common::registry_on_validator().await;

    let owner_key = chain.key_pair().copy();
    let mut steps = Vec::new();
    for step in spec["operations"].as_array().expect("operations") {
        let op = operation(step, &weights_ref, &tokenizer_ref);
        let stranger = step["signer"] == "other";
        if stranger {
            chain.set_key_pair(AccountSecretKey::generate());
        }
        let result = chain.try_add_block(|block| {
            block.with_operation(app, op.clone());
        });
        let result = result.await;
        if stranger {
            chain.set_key_pair(owner_key.copy());
        }
        let accepted = result.is_ok();
        let error = result.err().map(|e| format!("{e:?}"));
        let expected = step["expect"] == "ok";
        assert_eq!(accepted, expected, "step {step}: {error:?}");
        // A contract panic reaches the client as a bare wasm trap, without its message: check
        // the validation rules' message here, on the same code natively.
        steps.push(json!({"accepted": accepted, "error": error, "rule_error": rule_error(&op)}));
    }

    let models = query(
        &chain,
        app,
        "{ models { name version format description license retired registeredHeight \
         retiredHeight registeredBy weights { blake3 size urls } tokenizer { blake3 size urls } \
         chainId applicationId height } }",
    )
    .await;
    let mut queries = Vec::new();
    for q in spec["queries"].as_array().expect("queries") {
        let version = q["version"]
            .as_str()
            .map_or(String::new(), |v| format!(", version: \"{v}\""));
        let name = q["name"].as_str().expect("name");
        let response = query(
            &chain,
            app,
            &format!("{{ model(name: \"{name}\"{version}) {{ version }} }}"),
        )
        .await;
        if let Some(expected) = q["expect"].as_str() {
            assert_eq!(
                response["data"]["model"]["version"], expected,
                "{q}: {response}"
            );
        } else {
            let error = &response["errors"][0];
            assert_eq!(error["extensions"]["code"], q["code"], "{q}: {response}");
            let message = error["message"].as_str().expect("message");
            assert!(
                message.contains(q["error"].as_str().unwrap()),
                "{q}: {message}"
            );
        }
        queries.push(response);
    }

    // Greedy: llama2.c's text, byte for byte. A one-token query first gives the fixed costs
    // (module compile, fetch, hash, load), so the decode rate is (count - 1) / difference.
    let count = golden_token_count(&weights, &tokenizer);
    let started = Instant::now();
    let one = query(
        &chain,
        app,
        &format!("{{ generate(model: \"stories260K\", prompt: \"{PROMPT}\", temperature: 0, maxTokens: 1) {{ text }} }}"),
    )
    .await;
    let one_s = started.elapsed().as_secs_f64();
    assert!(one["data"]["generate"]["text"].is_string(), "{one}");
    let started = Instant::now();
    let greedy = query(
        &chain,
        app,
        &format!(
            "{{ generate(model: \"stories260K\", prompt: \"{PROMPT}\", temperature: 0, \
             maxTokens: {count}) {{ text stopReason inputTokens outputTokens seed seedSource \
             model {{ version height chainId applicationId }} }} }}"
        ),
    )
    .await;
    let greedy_s = started.elapsed().as_secs_f64();
    let result = &greedy["data"]["generate"];
    let text = result["text"]
        .as_str()
        .unwrap_or_else(|| panic!("generate failed: {greedy}"));
    assert_eq!(
        format!("{PROMPT}{text}\n"),
        golden,
        "greedy generate differs from llama2.c"
    );
    assert_eq!(result["outputTokens"], count);

    // Sampled, with the seed derived from chain state: the test in Python re-derives it and
    // runs the simulator's engine with it.
    let sampled = query(
        &chain,
        app,
        &format!(
            "{{ generate(model: \"stories260K\", prompt: \"{PROMPT}\", maxTokens: 40) \
             {{ text seed seedSource outputTokens model {{ version height chainId applicationId }} }} }}"
        ),
    )
    .await;
    assert_eq!(
        sampled["data"]["generate"]["seedSource"], "derived",
        "{sampled}"
    );
    let llm = query(&chain, app, &format!("{{ prompt(prompt: \"{PROMPT}\") }}")).await;
    assert!(
        llm["data"]["prompt"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{llm}"
    );

    let chains = cross_chain(&validator, &mut chain, app, &refs).await;

    // The hash check: a registered file whose bytes differ never reaches the engine.
    let mut bad = tokenizer_ref.clone();
    bad["blake3"] = json!("3".repeat(64));
    chain
        .add_block(|block| {
            block.with_operation(
                app,
                Operation::RegisterModel(common::registration(
                    "tampered",
                    "1",
                    refs[0].clone(),
                    serde_json::from_value::<FileRef>(bad).unwrap(),
                )),
            );
        })
        .await;
    let tampered = query(
        &chain,
        app,
        "{ generate(model: \"tampered\", maxTokens: 1) { text } }",
    )
    .await;
    assert_eq!(
        tampered["errors"][0]["extensions"]["code"], "HashMismatch",
        "{tampered}"
    );

    let out = json!({
        "steps": steps,
        "models": models["data"]["models"],
        "queries": queries,
        "greedy": result,
        "greedy_seconds": greedy_s,
        "one_token_seconds": one_s,
        "decode_tokens_per_second": (count - 1) as f64 / (greedy_s - one_s),
        "sampled": sampled["data"]["generate"],
        "build_and_publish_seconds": build_s,
        "chains": chains,
    });
    println!(
        "linera service: greedy {count} tokens in {greedy_s:.2} s, 1 token in {one_s:.2} s, \
         decode {:.1} tokens/s; wasm build and publish {build_s:.1} s",
        (count - 1) as f64 / (greedy_s - one_s)
    );
    if let Some(path) = std::env::var_os("EDGECHAIN_CONFORMANCE_OUT") {
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).expect("write output");
    }
    drop(server);
}

/// The prompt and length of the story the cross-chain scenario mints (greedy).
const STORY_TOKENS: u32 = 24;

/// The steps of the cross-chain scenario on `app`: each its name, and whether the block was
/// accepted.
struct Steps {
    app: ApplicationId<RegistryAbi>,
    taken: Vec<Value>,
}

impl Steps {
    /// A block of `op` on `chain`, recorded as the step `name`.
    async fn take(&mut self, name: &str, chain: &ActiveChain, op: Operation) {
        let accepted = chain
            .try_add_block(|block| {
                block.with_operation(self.app, op);
            })
            .await
            .is_ok();
        self.record(name, accepted);
    }

    fn record(&mut self, name: &str, accepted: bool) {
        self.taken.push(json!({"step": name, "accepted": accepted}));
    }
}

/// A chain's stories, their owners named by role (`names`: owner, role).
async fn stories(
    chain: &ActiveChain,
    app: ApplicationId<RegistryAbi>,
    names: &[(AccountOwner, &str)],
) -> Value {
    let response = query(
        chain,
        app,
        "{ stories { id owner model version prompt text tokens } }",
    )
    .await;
    let mut stories = response["data"]["stories"].clone();
    for story in stories.as_array_mut().expect("stories") {
        let owner = story["owner"].as_str().expect("owner").to_owned();
        let role = names
            .iter()
            .find(|(o, _)| o.to_string() == owner)
            .map_or("someone else", |(_, role)| role);
        story["owner"] = json!(role);
    }
    stories
}

/// The follower's registry, as the node's `models` lists it.
async fn models(chain: &ActiveChain, app: ApplicationId<RegistryAbi>) -> Value {
    let response = query(
        chain,
        app,
        "{ models { name version description retired weights { blake3 size } \
         tokenizer { blake3 size } } }",
    )
    .await;
    response["data"]["models"].clone()
}

/// Issue 22 on Linera: bob's registry follows alice's (this chain's) `models` stream; alice
/// registers and retires a version, which bob certifies too; alice mints a story, a transfer to
/// carol (whose registry certifies nothing) bounces back, a transfer to bob arrives. What each
/// step and each chain shows, for tests/test_linera_app.py to compare with the simulator's.
async fn cross_chain(
    validator: &TestValidator,
    alice: &mut ActiveChain,
    app: ApplicationId<RegistryAbi>,
    refs: &[FileRef],
) -> Value {
    let bob = validator.new_chain().await;
    let carol = validator.new_chain().await;
    let alice_key = alice.key_pair().copy();
    let names = [
        (AccountOwner::from(alice.public_key()), "alice"),
        (AccountOwner::from(bob.public_key()), "bob"),
        (AccountOwner::from(carol.public_key()), "carol"),
    ];
    let mut steps = Steps {
        app,
        taken: Vec::new(),
    };
    let follow = Operation::FollowRegistry { chain: alice.id() };
    steps.take("bob follows alice", &bob, follow.clone()).await;
    steps.take("bob follows alice again", &bob, follow).await;
    let own = Operation::FollowRegistry { chain: carol.id() };
    steps.take("carol follows carol", &carol, own).await;
    bob.handle_new_events().await;
    let followed = models(&bob, app).await;

    let third = Operation::RegisterModel(Registration {
        description: Some("third version".into()),
        ..common::registration("stories260K", "3", refs[0].clone(), refs[1].clone())
    });
    steps.take("alice registers version 3", alice, third).await;
    let retire = Operation::RetireModel {
        name: "stories260K".into(),
        version: "3".into(),
    };
    steps.take("alice retires version 3", alice, retire).await;
    bob.handle_new_events().await;
    let bob_models = models(&bob, app).await;
    let mut bob_queries = Vec::new();
    for version in ["", ", version: \"3\""] {
        let q = format!("{{ model(name: \"stories260K\"{version}) {{ version }} }}");
        bob_queries.push(query(&bob, app, &q).await);
    }

    // The proposer's generation, recorded by the block (the simulator's oracle response).
    let generated = query(
        alice,
        app,
        &format!(
            "{{ generate(model: \"stories260K\", version: \"2\", prompt: \"{PROMPT}\", \
             temperature: 0, maxTokens: {STORY_TOKENS}) {{ text outputTokens }} }}"
        ),
    )
    .await;
    let generated = &generated["data"]["generate"];
    let mint = |version: &str| {
        Operation::MintStory(Mint {
            model: "stories260K".into(),
            version: version.into(),
            prompt: PROMPT.into(),
            text: generated["text"].as_str().expect("text").to_owned(),
            tokens: generated["outputTokens"].as_u64().expect("tokens") as u32,
        })
    };
    steps.take("alice mints a story", alice, mint("2")).await;
    steps
        .take("alice mints with a retired version", alice, mint("3"))
        .await;

    let to = |story: u64, owner: usize, chain: Option<&ActiveChain>| Operation::Transfer {
        story,
        owner: names[owner].0,
        chain: chain.map(ActiveChain::id),
    };
    alice.set_key_pair(AccountSecretKey::generate());
    steps
        .take("a stranger transfers alice's story", alice, to(1, 1, None))
        .await;
    alice.set_key_pair(alice_key.copy());

    let sent = alice
        .try_add_block(|block| {
            block.with_operation(app, to(1, 2, Some(&carol)));
        })
        .await;
    steps.record("alice sends story 1 to carol", sent.is_ok());
    let (sent, _) = sent.expect("the transfer to carol");
    let mut snapshots =
        vec![json!({"at": "sent to carol", "alice": stories(alice, app, &names).await})];
    // carol's block cannot accept the bundle (her registry refuses the story); her client then
    // rejects it, as Linera's client does with a bundle that fails, and the message bounces.
    let carol_could_accept = carol
        .try_add_block(|block| {
            block.with_messages_from(&sent);
        })
        .await
        .is_ok();
    if !carol_could_accept {
        carol
            .add_block(|block| {
                block.with_messages_from_by_action(&sent, MessageAction::Reject);
            })
            .await;
    }
    let bounced = alice.handle_received_messages().await.is_some();
    snapshots.push(json!({
        "at": "carol refused",
        "carol_took_its_inbox": true,
        "alice_took_the_bounce": bounced,
        "alice": stories(alice, app, &names).await,
        "carol": stories(&carol, app, &names).await,
    }));

    steps
        .take("alice sends story 1 to bob", alice, to(1, 1, Some(&bob)))
        .await;
    let arrived = bob.handle_received_messages().await.is_some();
    snapshots.push(json!({
        "at": "bob took it",
        "bob_took_its_inbox": arrived,
        "alice": stories(alice, app, &names).await,
        "bob": stories(&bob, app, &names).await,
    }));
    steps
        .take("alice sends story 1 again", alice, to(1, 1, Some(&bob)))
        .await;
    steps
        .take("bob gives it to alice on his chain", &bob, to(1, 0, None))
        .await;
    snapshots.push(json!({"at": "bob gave it", "bob": stories(&bob, app, &names).await}));

    json!({
        "steps": steps.taken,
        "bob_models_followed": followed,
        "bob_models": bob_models,
        "bob_queries": bob_queries,
        "carol_could_accept": carol_could_accept,
        "bob_following_alice": query(&bob, app, "{ following }").await["data"]["following"]
            == json!(alice.id().to_string()),
        "stories": snapshots,
    })
}
