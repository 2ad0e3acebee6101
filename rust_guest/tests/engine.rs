//! Engine tests: checkpoint validation, tokenizer, sampler, and the run.c golden output.

use std::path::PathBuf;
use std::sync::Arc;

use edgechain_guest::checkpoint::parse_header;
use edgechain_guest::sampler::{argmax, sample_topp, Candidates, Rng, Sampler, SamplerParams};
use edgechain_guest::tokenizer::{Tokenizer, Utf8Stream};
use edgechain_guest::{EngineError, GenerationParams, LoadedModel, Session, StopReason};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/stories260K")
}

fn read(name: &str) -> Vec<u8> {
    let path = models_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn model() -> Arc<LoadedModel> {
    Arc::new(
        LoadedModel::load(&read("stories260K.bin"), &read("tok512.bin"))
            .expect("stories260K loads"),
    )
}

fn header(values: [i32; 7]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn generate(model: &Arc<LoadedModel>, prompt: &str, json: &str) -> (Vec<u32>, Vec<u8>, StopReason) {
    let params = GenerationParams::from_json(json).expect("params parse");
    let mut session = Session::start(model.clone(), prompt, &params).expect("session starts");
    let (mut ids, mut text) = (Vec::new(), Vec::new());
    while let Some((id, bytes)) = session.step().expect("step") {
        ids.push(id);
        text.extend_from_slice(&bytes);
    }
    (ids, text, session.stop_reason())
}

// ---- checkpoint ----

#[test]
fn golden_stories260k_greedy_matches_run_c() {
    let model = model();
    let params =
        GenerationParams::from_json(r#"{"temperature": 0, "max_positions": 256}"#).unwrap();
    let mut session = Session::start(model, "Once upon a time", &params).unwrap();
    let mut printed = session.prompt_text();
    while let Some((_, bytes)) = session.step().unwrap() {
        printed.extend_from_slice(&bytes);
    }
    printed.push(b'\n'); // run.c's final newline
    let expected = read("greedy_once_upon_a_time_256.txt");
    assert_eq!(
        String::from_utf8_lossy(&printed),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(session.stop_reason(), StopReason::MaxTokens);
    assert_eq!(session.prompt_tokens() + session.generated_tokens(), 257);
}

#[test]
fn model_info_reports_gqa_and_shared_classifier() {
    let info: serde_json::Value = serde_json::from_str(&model().info_json()).unwrap();
    assert_eq!(info["n_heads"], 8);
    assert_eq!(info["n_kv_heads"], 4);
    assert_eq!(info["vocab_size"], 512);
    assert_eq!(info["shared_classifier"], true);
}

#[test]
fn truncated_checkpoint_reports_expected_and_actual_sizes() {
    let mut bytes = read("stories260K.bin");
    bytes.truncate(bytes.len() - 4);
    let err = parse_header(&bytes).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::InvalidCheckpoint(_)), "{err:?}");
    assert!(msg.contains("1056540") && msg.contains("1056536"), "{msg}");
}

#[test]
fn checkpoint_with_extra_bytes_is_rejected() {
    let mut bytes = read("stories260K.bin");
    bytes.extend_from_slice(&[0; 8]);
    assert!(matches!(
        parse_header(&bytes),
        Err(EngineError::InvalidCheckpoint(_))
    ));
}

#[test]
fn checkpoint_header_values_are_checked() {
    let cases = [
        [0, 172, 5, 8, 4, 512, 512],   // dim 0
        [64, 172, 5, 8, 0, 512, 512],  // n_kv_heads 0
        [64, 172, 5, 7, 7, 512, 512],  // dim not a multiple of n_heads
        [64, 172, 5, 8, 3, 512, 512],  // n_heads not a multiple of n_kv_heads
        [64, 172, 5, 8, 16, 512, 512], // more kv heads than heads
        [64, 172, -5, 8, 4, 512, 512], // negative layers
        [64, 172, 5, 8, 4, 0, 512],    // vocab 0
    ];
    for case in cases {
        let err = parse_header(&header(case)).unwrap_err();
        assert!(
            matches!(err, EngineError::InvalidCheckpoint(_)),
            "{case:?}: {err:?}"
        );
    }
    assert!(matches!(
        parse_header(&[1, 2, 3]),
        Err(EngineError::InvalidCheckpoint(_))
    ));
}

#[test]
fn negative_vocab_means_a_separate_classifier() {
    let shared = header([8, 16, 1, 2, 1, 4, 4]);
    let expected = parse_header(&shared).unwrap_err().to_string();
    // dim 8, hidden 16, 1 layer, kv_dim 4: weights = 4*8 + (8 + 64 + 2*32 + 64 + 8 + 3*128) + 8 + 4*4
    let weights = 32 + 8 + 64 + 64 + 64 + 8 + 384 + 8 + 16;
    assert!(
        expected.contains(&(28 + 4 * weights).to_string()),
        "{expected}"
    );
    let mut file = header([8, 16, 1, 2, 1, -4, 4]);
    file.resize(28 + 4 * (weights + 32), 0);
    let cfg = parse_header(&file).expect("separate classifier size accepted");
    assert!(!cfg.shared_classifier);
    assert_eq!(cfg.vocab_size, 4);
    assert_eq!(cfg.kv_dim(), 4);
}

#[test]
fn vocab_mismatch_is_reported() {
    let tok = read("tok512.bin");
    // Drop the last token (score, len, bytes): 511 tokens for a 512-token model.
    let mut at = 4;
    let mut starts = Vec::new();
    while at < tok.len() {
        starts.push(at);
        let len = i32::from_le_bytes(tok[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    let short = &tok[..*starts.last().unwrap()];
    let err = LoadedModel::load(&read("stories260K.bin"), short).unwrap_err();
    assert!(matches!(err, EngineError::VocabMismatch(_)), "{err:?}");
    let err = LoadedModel::load(&read("stories260K.bin"), &tok[..tok.len() - 1]).unwrap_err();
    assert!(matches!(err, EngineError::InvalidTokenizer(_)), "{err:?}");
}

// ---- tokenizer ----

fn tokenizer() -> Tokenizer {
    Tokenizer::from_bytes(&read("tok512.bin")).unwrap()
}

#[test]
fn encode_starts_with_bos_and_dummy_space() {
    let tok = tokenizer();
    let ids = tok.encode("Once upon a time", true, true);
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert!(tok.token_text(ids[1]).unwrap().starts_with(b" "));
    assert_eq!(tok.encode("", false, false), Vec::<u32>::new());
    assert_eq!(tok.encode("", true, false), vec![1]);
}

#[test]
fn round_trips_ascii_non_ascii_and_byte_fallback() {
    let tok = tokenizer();
    for text in [
        "Once upon a time",
        "Héllo wörld — ✓",
        "日本語 🦀",
        "tab\tand\nnewline",
    ] {
        let ids = tok.encode(text, true, false);
        assert_eq!(tok.decode(&ids), text.as_bytes(), "{text}");
    }
    // tok512 has no CJK: every byte falls back to <0xNN> = byte + 3.
    let ids = tok.encode("日", false, false);
    let bytes = "日".as_bytes();
    assert_eq!(
        &ids[ids.len() - 3..],
        &[
            bytes[0] as u32 + 3,
            bytes[1] as u32 + 3,
            bytes[2] as u32 + 3
        ]
    );
}

#[test]
fn utf8_stream_never_emits_a_broken_character() {
    let mut stream = Utf8Stream::default();
    let crab = "🦀".as_bytes();
    assert_eq!(stream.push(&crab[..1]), b"");
    assert_eq!(stream.push(&crab[1..3]), b"");
    assert_eq!(stream.push(&crab[3..]), crab);
    assert_eq!(stream.push(b"ab\xC3"), b"ab");
    assert_eq!(stream.push(b"\xA9!"), "é!".as_bytes());
    assert_eq!(stream.push(b"\xE2\x82"), b"");
    assert_eq!(stream.flush(), b"\xE2\x82");
}

#[test]
fn malformed_tokenizer_is_rejected() {
    let mut bad = 10i32.to_le_bytes().to_vec();
    bad.extend_from_slice(&1.0f32.to_le_bytes());
    bad.extend_from_slice(&99i32.to_le_bytes()); // longer than max_token_length
    assert!(matches!(
        Tokenizer::from_bytes(&bad),
        Err(EngineError::InvalidTokenizer(_))
    ));
    assert!(matches!(
        Tokenizer::from_bytes(&[1, 0]),
        Err(EngineError::InvalidTokenizer(_))
    ));
}

// ---- sampler ----

#[test]
fn rng_matches_run_c_xorshift() {
    // run.c's random_u32 / random_f32 from state 42, computed independently (Python big ints).
    let mut rng = Rng::new(42);
    assert_eq!(
        [rng.next_u32(), rng.next_u32(), rng.next_u32()],
        [1456360119, 3359763283, 3393612768]
    );
    let mut rng = Rng::new(42);
    assert_eq!(rng.next_f32(), 0.339_085_22);
    assert_eq!(rng.next_f32(), 0.782_255_8);
}

#[test]
fn argmax_ties_go_to_the_lowest_index() {
    assert_eq!(argmax(&[0.1, 0.5, 0.5, 0.2]), 1);
    assert_eq!(argmax(&[3.0]), 0);
}

#[test]
fn top_p_keeps_the_nucleus() {
    let probs = [0.05, 0.6, 0.3, 0.05];
    let mut scratch = Candidates::default();
    // coin 0 -> most probable; coin just below 1 -> last member of the 0.9 nucleus (index 2).
    assert_eq!(sample_topp(&probs, 0.8, 0.0, &mut scratch), 1);
    assert_eq!(sample_topp(&probs, 0.8, 0.999, &mut scratch), 2);
}

#[test]
fn nan_logits_never_panic() {
    let mut scratch = Candidates::default();
    assert_eq!(sample_topp(&[f32::NAN; 4], 0.9, 0.5, &mut scratch), 0);
    for top_p in [0.9, 1.0] {
        let params = SamplerParams {
            temperature: 1.0,
            top_p,
            seed: 1,
            repeat_penalty: 1.0,
            repeat_window: 0,
        };
        let token = Sampler::new(params)
            .unwrap()
            .sample(&mut [f32::NAN; 4], &[]);
        assert!(token < 4);
    }
}

#[test]
fn sampler_rejects_bad_parameters() {
    let ok = SamplerParams {
        temperature: 1.0,
        top_p: 0.9,
        seed: 1,
        repeat_penalty: 1.0,
        repeat_window: 64,
    };
    for bad in [
        SamplerParams {
            temperature: -0.1,
            ..ok.clone()
        },
        SamplerParams {
            top_p: 0.0,
            ..ok.clone()
        },
        SamplerParams {
            top_p: 1.5,
            ..ok.clone()
        },
        SamplerParams {
            repeat_penalty: 0.5,
            ..ok.clone()
        },
    ] {
        assert!(matches!(
            Sampler::new(bad),
            Err(EngineError::InvalidArgument(_))
        ));
    }
}

#[test]
fn repeat_penalty_changes_greedy_choice() {
    let params = SamplerParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
        repeat_penalty: 10.0,
        repeat_window: 4,
    };
    let mut sampler = Sampler::new(params).unwrap();
    let mut logits = vec![1.0, 5.0, 2.0];
    assert_eq!(sampler.sample(&mut logits, &[1]), 2);
    let mut logits = vec![1.0, 5.0, 2.0];
    assert_eq!(
        sampler.sample(&mut logits, &[1, 0, 0, 0, 0]),
        1,
        "token 1 is outside the window"
    );
}

// ---- sessions ----

#[test]
fn same_seed_same_tokens_and_different_seed_differs() {
    let model = model();
    let json = |seed: u64| {
        format!(r#"{{"temperature": 1.0, "top_p": 0.9, "seed": {seed}, "max_tokens": 40}}"#)
    };
    let (a, _, _) = generate(&model, "Once", &json(7));
    let (b, _, _) = generate(&model, "Once", &json(7));
    let (c, _, _) = generate(&model, "Once", &json(8));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn limits_and_stop_strings() {
    let model = model();
    let (ids, _, reason) = generate(
        &model,
        "Once upon a time",
        r#"{"temperature": 0, "max_tokens": 5}"#,
    );
    assert_eq!((ids.len(), reason), (5, StopReason::MaxTokens));
    let (_, text, reason) = generate(
        &model,
        "Once upon a time",
        r#"{"temperature": 0, "stop": ["Lily"]}"#,
    );
    assert_eq!(reason, StopReason::StopString);
    assert!(String::from_utf8(text).unwrap().ends_with("Lily"));
    // max_positions 6 with a 5-token prompt: run.c samples at positions 4 and 5.
    let (ids, _, _) = generate(
        &model,
        "Once upon a time",
        r#"{"temperature": 0, "max_positions": 6}"#,
    );
    assert_eq!(ids.len(), 2);
}

#[test]
fn full_context_stops_then_errors() {
    let model = model();
    // A prompt of 509 tokens (BOS included) leaves positions 508..511 for sampling: 4 tokens.
    let mut prompt = "Once upon a time ".repeat(100);
    assert!(model.tokenizer().encode(&prompt, true, false).len() < 509);
    while model.tokenizer().encode(&prompt, true, false).len() < 509 {
        prompt.push_str("Once upon a time ");
        if model.tokenizer().encode(&prompt, true, false).len() > 509 {
            prompt.truncate(prompt.len() - 17);
            prompt.push_str("a ");
        }
    }
    let prompt_len = model.tokenizer().encode(&prompt, true, false).len();
    assert!(prompt_len <= 512, "{prompt_len}");
    for json in [
        r#"{"temperature": 0, "max_positions": null}"#,
        r#"{"temperature": 0, "max_positions": 4096}"#,
    ] {
        let params = GenerationParams::from_json(json).unwrap();
        let mut session = Session::start(model.clone(), &prompt, &params).unwrap();
        while session.step().unwrap().is_some() {}
        assert_eq!(session.stop_reason(), StopReason::ContextFull, "{json}");
        assert_eq!(session.generated_tokens(), 512 - prompt_len + 1);
        let err = session.step().unwrap_err();
        assert!(
            matches!(err, EngineError::ContextFull(ref m) if m.contains("512")),
            "{err:?}"
        );
    }
}

#[test]
fn prompt_too_long_and_bad_params() {
    let model = model();
    let long = "a b ".repeat(400);
    let err = Session::start(model.clone(), &long, &GenerationParams::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, EngineError::PromptTooLong(ref m) if m.contains("512")),
        "{err:?}"
    );
    for json in [
        r#"{"temperature": -1}"#,
        r#"{"top_p": 0}"#,
        "not json",
        r#"{"tempature": 1}"#,
        r#"{"stop": [""]}"#,
    ] {
        let err = GenerationParams::from_json(json)
            .and_then(|p| Session::start(model.clone(), "x", &p).map(|_| ()))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::InvalidArgument(_)),
            "{json}: {err:?}"
        );
    }
}
