//! The int8 matrix-vector product's native paths side by side (AVX-512, AVX2, scalar: those
//! this CPU runs), one thread, on synthetic Q8_0 weights of the bench shapes' matrices:
//! nanoseconds per row, each the best of `repeats` passes, the paths interleaved pass by pass
//! (so a busy moment of a shared machine hits them alike). "hot": one matrix again and again
//! (in cache); "stream": as many copies as fill 256 MiB, each read once per pass (from memory,
//! as a decode reads a model larger than the cache).
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
    // (rows, cols, group size): 15M's attention, feed-forward in and out, classifier; 42M's
    // feed-forward; 110M's attention and feed-forward in and out.
    let shapes = [
        (288, 288, 32),
        (768, 288, 32),
        (288, 768, 32),
        (32_000, 288, 32),
        (1376, 512, 32),
        (512, 1376, 32),
        (768, 768, 64),
        (2048, 768, 64),
        (768, 2048, 64),
    ];
    for (rows, cols, gs) in shapes {
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
                "{rows}x{cols}/{gs} {mode}: ns/row {}{ratio}",
                figures.join(", ")
            );
        }
    }
    Ok(())
}
