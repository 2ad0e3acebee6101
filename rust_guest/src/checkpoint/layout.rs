//! The weight section's layout: the runs of values a header implies, in file order, and where
//! each goes in [`TransformerWeights`](crate::weights::TransformerWeights).

use super::header::CheckpointConfig;
use crate::weights::LayerMatrix;

/// How one run of the weight section is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    F32,
    /// Int8 values, kept as a u8 tensor (candle has no i8) and read back as i8.
    I8,
}

/// Where a run of the weight section goes in [`TransformerWeights`](crate::weights::TransformerWeights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Embedding,
    AttNorm(usize),
    FfnNorm(usize),
    Layer(usize, LayerMatrix),
    FinalNorm,
    Classifier,
}

/// One run of values of the weight section, in file order.
pub(super) struct Entry {
    /// `None` for the file's freq_cis tables, which are read and dropped (the transformer
    /// recomputes them, as run.c does).
    pub(super) slot: Option<Slot>,
    /// Whether this run is the f32 group scales of an int8 matrix (its values come just before).
    pub(super) scales: bool,
    pub(super) shape: Vec<usize>,
    pub(super) count: usize,
    pub(super) kind: Kind,
}

impl Entry {
    fn new(slot: Option<Slot>, shape: Vec<usize>, kind: Kind) -> Self {
        Self {
            count: shape.iter().product(),
            slot,
            scales: false,
            shape,
            kind,
        }
    }

    fn f32(slot: Slot, shape: Vec<usize>) -> Self {
        Self::new(Some(slot), shape, Kind::F32)
    }

    pub(super) fn bytes(&self) -> u64 {
        match self.kind {
            Kind::F32 => 4 * self.count as u64,
            Kind::I8 => self.count as u64,
        }
    }
}

/// The shape of each layer matrix, in run.c's order.
fn layer_matrices(cfg: &CheckpointConfig) -> [(LayerMatrix, Vec<usize>); 7] {
    LayerMatrix::ALL.map(|m| (m, m.shape(cfg).to_vec()))
}

/// The weight section's layout for `cfg`, in file order.
pub(super) fn layout(cfg: &CheckpointConfig) -> Vec<Entry> {
    match cfg.group_size {
        None => layout_f32(cfg),
        Some(gs) => layout_q8(cfg, gs),
    }
}

fn layout_f32(cfg: &CheckpointConfig) -> Vec<Entry> {
    let (dim, layers) = (cfg.dim, cfg.n_layers);
    let mut entries = vec![Entry::f32(Slot::Embedding, vec![cfg.vocab_size, dim])];
    let [wq, wk, wv, wo, w1, w2, w3] = layer_matrices(cfg);
    entries.extend((0..layers).map(|i| Entry::f32(Slot::AttNorm(i), vec![dim])));
    for (m, shape) in [wq, wk, wv, wo] {
        entries.extend((0..layers).map(|i| Entry::f32(Slot::Layer(i, m), shape.clone())));
    }
    entries.extend((0..layers).map(|i| Entry::f32(Slot::FfnNorm(i), vec![dim])));
    for (m, shape) in [w1, w2, w3] {
        entries.extend((0..layers).map(|i| Entry::f32(Slot::Layer(i, m), shape.clone())));
    }
    entries.push(Entry::f32(Slot::FinalNorm, vec![dim]));
    // freq_cis_real + freq_cis_imag (seq_len x head_size/2 each).
    entries.push(Entry::new(
        None,
        vec![cfg.seq_len * cfg.head_size()],
        Kind::F32,
    ));
    if !cfg.shared_classifier {
        entries.push(Entry::f32(Slot::Classifier, vec![cfg.vocab_size, dim]));
    }
    entries
}

/// export.py's `version2_export` order: the f32 norms first, then every matrix as its int8
/// values followed by its f32 group scales. No RoPE tables.
fn layout_q8(cfg: &CheckpointConfig, gs: usize) -> Vec<Entry> {
    let (dim, layers) = (cfg.dim, cfg.n_layers);
    let mut entries: Vec<Entry> = (0..layers)
        .map(|i| Entry::f32(Slot::AttNorm(i), vec![dim]))
        .chain((0..layers).map(|i| Entry::f32(Slot::FfnNorm(i), vec![dim])))
        .collect();
    entries.push(Entry::f32(Slot::FinalNorm, vec![dim]));
    let mut quantized = |slot: Slot, shape: Vec<usize>| {
        let groups = shape.iter().product::<usize>() / gs;
        entries.push(Entry::new(Some(slot), shape, Kind::I8));
        entries.push(Entry {
            scales: true,
            ..Entry::f32(slot, vec![groups])
        });
    };
    quantized(Slot::Embedding, vec![cfg.vocab_size, dim]);
    for (m, shape) in layer_matrices(cfg) {
        for i in 0..layers {
            quantized(Slot::Layer(i, m), shape.clone());
        }
    }
    if !cfg.shared_classifier {
        quantized(Slot::Classifier, vec![cfg.vocab_size, dim]);
    }
    entries
}
