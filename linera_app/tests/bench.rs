//! Decode speed of the service on TestValidator (not a test: `#[ignore]`d, run by hand):
//!
//!     edgechain synth-model --shape 15M --tokenizer DIR/tok.bin DIR/model.bin
//!     EDGECHAIN_BENCH_DIR=DIR scripts/build_linera_app.sh --bench
//!
//! A warm-up query (it compiles the service module), then one greedy query of 1 token and one
//! of `EDGECHAIN_BENCH_TOKENS` (default 200): the difference is decoding; the 1-token query is
//! the fixed cost (fetch, hash, load).

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::{path::PathBuf, time::Instant};

use edgechain_linera::Operation;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: scripts/build_linera_app.sh --bench"]
async fn service_decode_speed() {
    let dir = PathBuf::from(std::env::var("EDGECHAIN_BENCH_DIR").expect("EDGECHAIN_BENCH_DIR"));
    let tokens: usize = std::env::var("EDGECHAIN_BENCH_TOKENS").map_or(200, |t| t.parse().unwrap());
    let weights = std::fs::read(dir.join("model.bin")).expect("model.bin");
    let tokenizer = std::fs::read(dir.join("tok.bin")).expect("tok.bin");
    let size = weights.len();
    let (_server, refs) = common::serve(vec![("model.bin", weights), ("tok.bin", tokenizer)]).await;
    let common::Registry { chain, app, .. } = common::registry_on_validator().await;
    let registration = common::registration("bench", "1", refs[0].clone(), refs[1].clone());
    let op = Operation::RegisterModel(registration);
    chain
        .add_block(|block| {
            block.with_operation(app, op);
        })
        .await;
    // (tokens generated, seconds) of each query. The first compiles the service module (once per
    // process) and is left out. Random weights may stop early (an end token), so the rate counts
    // the tokens actually generated.
    let mut runs = Vec::new();
    for n in [1, 1, tokens] {
        let q = format!(
            "{{ generate(model: \"bench\", prompt: \"Once upon a time\", temperature: 0, \
             maxTokens: {n}) {{ outputTokens stopReason }} }}"
        );
        let started = Instant::now();
        let response = chain
            .query(app, async_graphql::Request::new(q))
            .await
            .response;
        let seconds = started.elapsed().as_secs_f64();
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data = serde_json::to_value(&response.data).expect("the response as JSON");
        let generated = data["generate"]["outputTokens"]
            .as_u64()
            .expect("outputTokens");
        println!(
            "{n} tokens asked: {generated} generated ({}), {seconds:.2} s",
            data["generate"]["stopReason"]
        );
        runs.push((generated, seconds));
    }
    let [_, (one, one_s), (many, many_s)] = runs[..] else {
        unreachable!()
    };
    println!(
        "service on TestValidator: {size} bytes of weights; {one} token {one_s:.2} s, {many} tokens \
         {many_s:.2} s; decode {:.1} tokens/s",
        (many - one) as f64 / (many_s - one_s)
    );
}
