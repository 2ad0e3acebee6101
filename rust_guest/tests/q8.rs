//! The int8 (version 2, runq.c's `ak42`) checkpoint reader: header checks, group sizes,
//! truncation, and the streaming loader on such a file. (End-to-end generation against
//! runq.c's output is tests/engine/test_engine_int8.py: it quantizes stories260K with
//! `edgechain quantize`.)

use candle_core::Device;
use edgechain_guest::checkpoint::{
    parse_header, parse_header_for_size, WeightLoader, MAX_HEADER_BYTES, Q8_HEADER_BYTES,
};
use edgechain_guest::weights::Matrix;
use edgechain_guest::EngineError;

/// dim 8, hidden 16, 1 layer, 2 heads, 1 kv head, vocab 4, seq_len 4.
const FIELDS: [i32; 7] = [8, 16, 1, 2, 1, 4, 4];

fn header(version: i32, fields: [i32; 7], shared: u8, group_size: i32) -> Vec<u8> {
    let mut h = 0x616b_3432u32.to_le_bytes().to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    for f in fields {
        h.extend_from_slice(&f.to_le_bytes());
    }
    h.push(shared);
    h.extend_from_slice(&group_size.to_le_bytes());
    h.resize(Q8_HEADER_BYTES, 0);
    h
}

/// The size of the tiny model's file with groups of `gs` and a shared classifier.
fn expected_size(gs: usize) -> usize {
    let (dim, hidden, kv_dim, vocab) = (8, 16, 4, 4);
    let norms = 4 * (2 + 1) * dim;
    let matrices = [
        vocab * dim,
        dim * dim,
        dim * kv_dim,
        dim * kv_dim,
        dim * dim,
        dim * hidden,
        hidden * dim,
        dim * hidden,
    ];
    Q8_HEADER_BYTES + norms + matrices.iter().map(|n| n + 4 * (n / gs)).sum::<usize>()
}

fn file(gs: i32) -> Vec<u8> {
    let mut bytes = header(2, FIELDS, 1, gs);
    bytes.resize(expected_size(gs as usize), 0);
    bytes
}

fn invalid_checkpoint(bytes: &[u8]) -> String {
    match parse_header(bytes) {
        Err(EngineError::InvalidCheckpoint(msg)) => msg,
        other => panic!("expected InvalidCheckpoint, got {other:?}"),
    }
}

#[test]
fn a_version_2_header_is_detected_by_its_magic() {
    let cfg = parse_header(&file(8)).expect("valid int8 header");
    assert_eq!(cfg.group_size, Some(8));
    assert_eq!((cfg.dim, cfg.hidden_dim, cfg.vocab_size), (8, 16, 4));
    assert!(cfg.shared_classifier);
    assert_eq!(cfg.expected_bytes(), expected_size(8) as u64);
    assert_eq!(cfg.header_bytes(), Q8_HEADER_BYTES);
}

#[test]
fn a_separate_classifier_adds_its_matrix_and_scales() {
    let mut bytes = header(2, FIELDS, 0, 4);
    let size = expected_size(4) + 4 * 8 + 4 * (4 * 8 / 4);
    bytes.resize(size, 0);
    let cfg = parse_header(&bytes).expect("separate classifier");
    assert!(!cfg.shared_classifier);
}

#[test]
fn bad_versions_and_flags_are_rejected() {
    let mut bytes = file(8);
    bytes[4..8].copy_from_slice(&1i32.to_le_bytes());
    assert!(invalid_checkpoint(&bytes).contains("version 1"));
    let mut bytes = file(8);
    bytes[36] = 2; // shared_classifier flag
    assert!(invalid_checkpoint(&bytes).contains("shared_classifier"));
}

#[test]
fn header_fields_are_checked_as_for_f32() {
    for (index, value) in [(0, 0), (2, -1), (4, 3), (5, -4), (5, 0)] {
        let mut fields = FIELDS;
        fields[index] = value;
        let mut bytes = header(2, fields, 1, 8);
        bytes.resize(expected_size(8), 0);
        invalid_checkpoint(&bytes);
    }
}

#[test]
fn group_sizes_must_divide_dim_and_hidden_dim() {
    // 16 divides hidden_dim but not dim; 3 divides neither; 0 and negatives are nonsense.
    for gs in [0, -8, 3, 16, 1 << 20] {
        let mut bytes = header(2, FIELDS, 1, gs);
        bytes.resize(expected_size(8), 0);
        let msg = invalid_checkpoint(&bytes);
        assert!(msg.contains("group size"), "{gs}: {msg}");
    }
    for gs in [1, 2, 4, 8] {
        parse_header(&file(gs)).unwrap_or_else(|e| panic!("group size {gs}: {e}"));
    }
}

#[test]
fn truncated_and_overlong_files_name_both_sizes() {
    let mut bytes = file(8);
    bytes.pop();
    let msg = invalid_checkpoint(&bytes);
    let (want, got) = (expected_size(8), expected_size(8) - 1);
    assert!(
        msg.contains(&want.to_string()) && msg.contains(&got.to_string()),
        "{msg}"
    );
    assert!(msg.contains("int8 groups of 8"), "{msg}");
    let mut bytes = file(8);
    bytes.push(0);
    invalid_checkpoint(&bytes);
    // Shorter than the 256-byte header itself.
    let msg = invalid_checkpoint(&file(8)[..100]);
    assert!(msg.contains("256-byte"), "{msg}");
}

#[test]
fn a_header_buffer_shorter_than_256_bytes_is_the_hosts_mistake() {
    let bytes = file(8);
    let err = parse_header_for_size(&bytes[..64], bytes.len() as u64).unwrap_err();
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err:?}");
}

#[test]
fn the_streaming_loader_reads_an_int8_file_and_reports_truncation() {
    let bytes = file(8);
    // The host passes the first MAX_HEADER_BYTES; the loader continues right after them.
    let head = &bytes[..MAX_HEADER_BYTES];
    let mut loader = WeightLoader::new(head, bytes.len() as u64, &Device::Cpu).unwrap();
    let mut at = MAX_HEADER_BYTES;
    while at < bytes.len() - 10 {
        let region = loader.region();
        let n = region.len().min(bytes.len() - 10 - at).min(7);
        region[..n].copy_from_slice(&bytes[at..at + n]);
        loader.advance(n).unwrap();
        at += n;
    }
    let err = loader.finish().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("got {at} of {}", bytes.len())),
        "{msg}"
    );

    let loader = WeightLoader::new(head, bytes.len() as u64, &Device::Cpu).unwrap();
    let (cfg, weights) = loader
        .read_from(&mut &bytes[MAX_HEADER_BYTES..])
        .expect("complete file loads");
    assert_eq!(cfg.group_size, Some(8));
    let Matrix::Q8 { values, scales, .. } = &weights.embedding else {
        panic!("the embedding of an int8 file is int8");
    };
    assert_eq!(values.dims(), &[4, 8]);
    assert_eq!(scales.dims(), &[4 * 8 / 8]);
    // The shared classifier is the embedding (values and scales).
    let Matrix::Q8 {
        values: cls_values,
        scales: cls_scales,
        ..
    } = &weights.classifier
    else {
        panic!("the shared classifier of an int8 file is int8");
    };
    assert_eq!(cls_values.id(), values.id());
    assert_eq!(cls_scales.id(), scales.id());
}
