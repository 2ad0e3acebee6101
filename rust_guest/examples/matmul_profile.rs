//! The batched f32 product against the decode's matrix-vector product, one thread, on
//! synthetic weights of the 15M shape's matrices: nanoseconds per (row, input) pair, each
//! figure the best of `repeats` calls (a call is shorter than a time slice, so its best is
//! rarely shared with other jobs on the machine). The ratio matvec / matmul is what a
//! batched pass saves per position on the products.
//! Usage: matmul_profile [batch] [repeats]

use std::time::Instant;

use edgechain_guest::matvec::{matmul, matvec};

fn best_of(repeats: usize, mut f: impl FnMut()) -> f64 {
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(Ok(32), |s| s.parse())?;
    let repeats: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let mut seed = 1u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((seed >> 40) as f32 / 16_777_216.0) - 0.5
    };
    // (rows, cols): the 15M model's attention, feed-forward in and out, and classifier.
    for (rows, cols) in [(288, 288), (768, 288), (288, 768), (32_000, 288)] {
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let xs: Vec<f32> = (0..batch * cols).map(|_| next()).collect();
        let mut out = vec![0.0f32; batch * rows];
        let batched = best_of(repeats, || matmul(&mut out, &w, &xs, batch));
        let single = best_of(repeats, || {
            for (o, x) in out.chunks_exact_mut(rows).zip(xs.chunks_exact(cols)) {
                matvec(o, &w, x);
            }
        });
        let per_pair = |s: f64| s * 1e9 / (rows * batch) as f64;
        println!(
            "{rows}x{cols} batch {batch}: matmul {:.2} ns/pair, matvec {:.2} ns/pair, x{:.2}",
            per_pair(batched),
            per_pair(single),
            single / batched
        );
    }
    Ok(())
}
