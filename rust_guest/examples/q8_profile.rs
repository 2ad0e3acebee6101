//! The int8 matrix-vector product's native paths side by side (AVX-512, AVX2, scalar: those
//! this CPU runs), one thread, on synthetic Q8_0 weights of the 15M, 42M and 110M models'
//! matrices: nanoseconds per row, each the best of `repeats` passes, the paths interleaved pass
//! by pass (so a busy moment of a shared machine hits them alike). "hot": one matrix again and
//! again (in cache); "stream": as many copies as fill 256 MiB, each read once per pass (from
//! memory, as a decode reads a model larger than the cache).
//! Usage: q8_profile [repeats]

use std::time::Instant;

use edgechain_guest::q8::{matvec_q8_paths, quantize_activations};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats: usize = std::env::args().nth(1).map_or(Ok(20), |s| s.parse())?;
    let paths: Vec<_> = matvec_q8_paths()
        .into_iter()
        .filter_map(|p| Some((p.name, p.kernel?)))
        .collect();
    let mut seed = 1u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((seed >> 40) as f32 / 16_777_216.0) - 0.5
    };
    for (model, rows, cols, gs) in matrices() {
        let copies = ((256 << 20) / (rows * cols)).max(1);
        let w: Vec<i8> = (0..copies * rows * cols)
            .map(|_| (next() * 254.0) as i8)
            .collect();
        let ws: Vec<f32> = (0..copies * rows * cols / gs)
            .map(|_| next() * 0.01)
            .collect();
        let x: Vec<f32> = (0..cols).map(|_| next()).collect();
        let (mut xq, mut xs) = (vec![0i16; cols], vec![0f32; cols / gs]);
        quantize_activations(&mut xq, &mut xs, &x, gs);
        let mut out = vec![0.0f32; rows];
        let (wn, sn) = (rows * cols, rows * cols / gs);
        for (mode, passes) in [("hot", copies), ("stream", 1)] {
            let mut best = vec![f64::INFINITY; paths.len()];
            for _ in 0..repeats {
                for ((_, kernel), best) in paths.iter().zip(best.iter_mut()) {
                    let t = Instant::now();
                    for c in 0..copies {
                        let c = if passes == 1 { c } else { 0 };
                        kernel(
                            &mut out,
                            &w[c * wn..][..wn],
                            &ws[c * sn..][..sn],
                            &xq,
                            &xs,
                            gs,
                        );
                    }
                    *best = best.min(t.elapsed().as_secs_f64() * 1e9 / (copies * rows) as f64);
                }
            }
            let figures: Vec<String> = paths
                .iter()
                .zip(&best)
                .map(|((name, _), ns)| format!("{name} {ns:.2}"))
                .collect();
            let ratio = best.get(1).map_or(String::new(), |b| {
                format!(" (second/first x{:.2})", b / best[0])
            });
            println!(
                "{model} {rows}x{cols}/{gs} {mode}: ns/row {}{ratio}",
                figures.join(", ")
            );
        }
    }
    Ok(())
}

/// The stories models' shapes (dim, hidden_dim; `edgechain/testing/synth.py`'s `SHAPES`), all
/// with a 32,000-token vocabulary.
const MODELS: [(&str, usize, usize); 3] =
    [("15M", 288, 768), ("42M", 512, 1376), ("110M", 768, 2048)];
const VOCABULARY: usize = 32_000;

/// Each model's distinct matrices, named, as (rows, cols) with `edgechain quantize`'s group
/// size: attention's, the feed-forward's in and out, the classifier.
fn matrices() -> Vec<(String, usize, usize, usize)> {
    let mut out = Vec::new();
    for (model, dim, hidden) in MODELS {
        let gs = default_group_size(dim, hidden);
        for (matrix, rows, cols) in [
            ("attention", dim, dim),
            ("feed-forward in", hidden, dim),
            ("feed-forward out", dim, hidden),
            ("classifier", VOCABULARY, dim),
        ] {
            out.push((format!("{model} {matrix}"), rows, cols, gs));
        }
    }
    out
}

/// `edgechain quantize`'s default group size: the largest power of two <= 64 dividing both
/// `dim` and `hidden_dim`.
fn default_group_size(dim: usize, hidden: usize) -> usize {
    let mut gs = 64;
    while !(dim.is_multiple_of(gs) && hidden.is_multiple_of(gs)) {
        gs /= 2;
    }
    gs
}
