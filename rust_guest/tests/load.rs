//! The load paths: bytes in memory, a file read straight into the weights, and the streaming
//! `WeightLoader` the wasm host drives. All give the same model and the same errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use edgechain_guest::checkpoint::{WeightLoader, HEADER_BYTES, MAX_REGION_BYTES};
use edgechain_guest::{EngineError, GenerationParams, LoadedModel, Session};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/stories260K")
}

fn checkpoint_path() -> PathBuf {
    models_dir().join("stories260K.bin")
}

fn tokenizer_path() -> PathBuf {
    models_dir().join("tok512.bin")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn greedy(model: LoadedModel) -> Vec<u32> {
    let params = GenerationParams::from_json(r#"{"temperature": 0, "max_tokens": 40}"#).unwrap();
    let mut session = Session::start(Arc::new(model), "Once upon a time", &params).unwrap();
    let mut ids = Vec::new();
    while let Some((id, _)) = session.step().unwrap() {
        ids.push(id);
    }
    ids
}

/// A scratch file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("edgechain-load-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn from_files_matches_bytes() {
    let from_bytes =
        LoadedModel::load(&read(&checkpoint_path()), &read(&tokenizer_path())).unwrap();
    let from_files = LoadedModel::from_files(&checkpoint_path(), &tokenizer_path()).unwrap();
    assert_eq!(from_files.info_json(), from_bytes.info_json());
    let ids = greedy(from_files);
    assert_eq!(ids.len(), 40);
    assert_eq!(ids, greedy(from_bytes));
}

#[test]
fn streamed_in_odd_pieces_matches_bytes() {
    let bytes = read(&checkpoint_path());
    let mut loader =
        WeightLoader::new(&bytes[..HEADER_BYTES], bytes.len() as u64, &Device::Cpu).unwrap();
    let mut at = HEADER_BYTES;
    loop {
        let region = loader.region();
        assert!(region.len() <= MAX_REGION_BYTES);
        if region.is_empty() {
            break;
        }
        let n = region.len().min(777);
        region[..n].copy_from_slice(&bytes[at..at + n]);
        at += n;
        loader.advance(n).unwrap();
    }
    assert_eq!(at, bytes.len());
    assert!(loader.is_complete());
    let (config, weights) = loader.finish().unwrap();
    let model = LoadedModel::from_weights(config, weights, &read(&tokenizer_path())).unwrap();
    let reference = LoadedModel::load(&bytes, &read(&tokenizer_path())).unwrap();
    assert_eq!(greedy(model), greedy(reference));
}

#[test]
fn unfinished_stream_is_a_truncated_checkpoint() {
    let bytes = read(&checkpoint_path());
    let mut loader =
        WeightLoader::new(&bytes[..HEADER_BYTES], bytes.len() as u64, &Device::Cpu).unwrap();
    loader.advance(100).unwrap();
    let err = loader.finish().unwrap_err();
    assert!(matches!(err, EngineError::InvalidCheckpoint(_)), "{err:?}");
    assert!(
        err.to_string().contains("got 128 of 1056540 bytes"),
        "{err}"
    );
}

#[test]
fn advancing_past_the_region_is_rejected() {
    let bytes = read(&checkpoint_path());
    let mut loader =
        WeightLoader::new(&bytes[..HEADER_BYTES], bytes.len() as u64, &Device::Cpu).unwrap();
    let len = loader.region().len();
    let err = loader.advance(len + 1).unwrap_err();
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err:?}");
}

#[test]
fn file_errors_match_the_bytes_errors() {
    let bytes = read(&checkpoint_path());
    let tok = read(&tokenizer_path());
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() - 4].to_vec(), tok.clone()),
        ("extra", [bytes.as_slice(), &[0; 8]].concat(), tok.clone()),
        ("tiny", bytes[..10].to_vec(), tok.clone()),
        ("badtok", bytes.clone(), tok[..tok.len() - 1].to_vec()),
        ("empty_tok", bytes.clone(), vec![1, 0]),
    ];
    for (name, ckpt, tokenizer) in cases {
        let from_bytes = LoadedModel::load(&ckpt, &tokenizer).unwrap_err();
        let ckpt_file = TempFile::new(&format!("{name}.bin"), &ckpt);
        let tok_file = TempFile::new(&format!("{name}.tok"), &tokenizer);
        let from_files = LoadedModel::from_files(&ckpt_file.0, &tok_file.0).unwrap_err();
        assert_eq!(from_files.code(), from_bytes.code(), "{name}");
        assert_eq!(from_files.to_string(), from_bytes.to_string(), "{name}");
    }
}

#[test]
fn vocab_mismatch_from_files() {
    // A 512-token model with a tokenizer missing its last token.
    let tok = read(&tokenizer_path());
    let mut at = 4;
    let mut last = at;
    while at < tok.len() {
        last = at;
        let len = i32::from_le_bytes(tok[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    let short = TempFile::new("short.tok", &tok[..last]);
    let err = LoadedModel::from_files(&checkpoint_path(), &short.0).unwrap_err();
    assert!(matches!(err, EngineError::VocabMismatch(_)), "{err:?}");
}

#[test]
fn missing_files_are_reported() {
    let missing = models_dir().join("no-such-file.bin");
    let err = LoadedModel::from_files(&missing, &tokenizer_path()).unwrap_err();
    assert!(matches!(err, EngineError::InvalidCheckpoint(_)), "{err:?}");
    assert!(err.to_string().contains("no-such-file.bin"), "{err}");
    let err = LoadedModel::from_files(&checkpoint_path(), &missing).unwrap_err();
    assert!(matches!(err, EngineError::InvalidTokenizer(_)), "{err:?}");
}

#[test]
fn a_file_longer_than_at_the_start_is_rejected() {
    let bytes = read(&checkpoint_path());
    let loader =
        WeightLoader::new(&bytes[..HEADER_BYTES], bytes.len() as u64, &Device::Cpu).unwrap();
    let longer = [&bytes[HEADER_BYTES..], &[0u8; 4]].concat();
    let err = loader.read_from(&mut longer.as_slice()).unwrap_err();
    assert!(matches!(err, EngineError::InvalidCheckpoint(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("file is longer than the 1056540 bytes its header implies"),
        "{err}"
    );
}
