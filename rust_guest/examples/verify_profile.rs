//! Times generation and verification of one claim (one thread), for perf and callgrind, or
//! the top-p sampler alone on the claim's first 32 distributions (mode `sampler`: its draw and
//! the verification's check of the drawn token), or mode `decide`: the verification's whole
//! sampler rule (`sampler::decide` with the claimed token) at those positions. CLAIM=file
//! keeps the claim in a file (ids, one a line), so a verify run under perf runs no generation.
//! Usage: verify_profile <checkpoint> <tokenizer> <params-json> <gen|verify|both|sampler|decide> [repeats]

use std::sync::Arc;
use std::time::Instant;

use edgechain_guest::{verify_claim, GenerationParams, LoadedModel, Session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(
            "usage: verify_profile <checkpoint> <tokenizer> <params-json> <gen|verify|both|sampler|decide> [repeats]"
                .into(),
        );
    }
    let model = Arc::new(LoadedModel::load(
        &std::fs::read(&args[1])?,
        &std::fs::read(&args[2])?,
    )?);
    let params = GenerationParams::from_json(&args[3])?;
    let mode = args[4].as_str();
    let repeats: usize = args.get(5).map_or(Ok(1), |s| s.parse())?;
    let prompt = "Once upon a time";
    let generate = || -> Result<Vec<u32>, Box<dyn std::error::Error>> {
        let mut s = Session::start(model.clone(), prompt, &params)?;
        let mut ids = Vec::new();
        while let Some((id, _)) = s.step()? {
            ids.push(id);
        }
        Ok(ids)
    };
    // The claim: generated once, or read from the file named by CLAIM (ids, one a line).
    let ids = match std::env::var("CLAIM") {
        Ok(path) if std::path::Path::new(&path).exists() => std::fs::read_to_string(&path)?
            .lines()
            .map(|l| l.parse())
            .collect::<Result<Vec<u32>, _>>()?,
        other => {
            let ids = generate()?;
            if let Ok(path) = other {
                let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
                std::fs::write(path, text)?;
            }
            ids
        }
    };
    if mode == "decide" {
        // A verification's whole rule at each of the claim's first 32 positions (`decide`
        // with the claimed token: temperature, softmax, the top-p check), each position's best
        // of `repeats`, microseconds per position.
        let vocab = model.config().vocab_size;
        let logits = model.position_logits(&ids[..32])?;
        let sampler = edgechain_guest::sampler::SamplerParams {
            temperature: params.temperature as f32,
            top_p: params.top_p as f32,
            seed: params.seed,
            repeat_penalty: 1.0,
            repeat_window: 0,
        };
        let mut scratch = edgechain_guest::sampler::DecisionScratch::default();
        let mut best = vec![f64::INFINITY; 32];
        let mut row = vec![0.0f32; vocab];
        for _ in 0..repeats {
            for (i, l) in logits.chunks(vocab).enumerate() {
                row.copy_from_slice(l);
                let coin = (i as f32 * 0.618_034).fract();
                let expected = Some(ids[i + 1]);
                let t = Instant::now();
                edgechain_guest::sampler::decide(
                    &sampler,
                    &mut row,
                    &[],
                    coin,
                    expected,
                    &mut scratch,
                );
                best[i] = best[i].min(t.elapsed().as_secs_f64());
            }
        }
        eprintln!(
            "decide: {:.1} us per position",
            best.iter().sum::<f64>() * 1e6 / 32.0
        );
        return Ok(());
    }
    if mode == "sampler" {
        // The sampler alone on the claim's first 32 positions' distributions: the best of
        // `repeats` rounds, microseconds per draw.
        let vocab = model.config().vocab_size;
        let logits = model.position_logits(&ids[..32])?;
        let mut dists: Vec<Vec<f32>> = logits
            .chunks(vocab)
            .map(|row| row.iter().map(|l| l / params.temperature as f32).collect())
            .collect();
        for d in dists.iter_mut() {
            edgechain_guest::sampler::softmax(d);
        }
        let mut scratch = edgechain_guest::sampler::Candidates::default();
        // Each draw timed alone, its best of `repeats` (a draw is shorter than a time slice,
        // so its best is rarely shared with other jobs on the machine).
        // And the verification's check of the sampled token (`topp_picks`), timed the same way.
        let mut best = vec![f64::INFINITY; dists.len()];
        let mut best_check = vec![f64::INFINITY; dists.len()];
        let mut check = 0usize;
        for _ in 0..repeats {
            for (i, d) in dists.iter().enumerate() {
                let coin = (i as f32 * 0.618_034).fract();
                let top_p = params.top_p as f32;
                let t = Instant::now();
                let sampled = edgechain_guest::sampler::sample_topp(d, top_p, coin, &mut scratch);
                best[i] = best[i].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let picks =
                    edgechain_guest::sampler::topp_picks(d, top_p, coin, sampled, &mut scratch);
                best_check[i] = best_check[i].min(t.elapsed().as_secs_f64());
                assert!(picks, "the check refused the sampled token at {i}");
                check += sampled;
            }
        }
        let per_draw = |b: &[f64]| b.iter().sum::<f64>() * 1e6 / dists.len() as f64;
        eprintln!(
            "sample_topp: {:.1} us per draw, topp_picks: {:.1} us per check (check {check})",
            per_draw(&best),
            per_draw(&best_check)
        );
        return Ok(());
    }
    let (mut g, mut v) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..repeats {
        if mode != "verify" {
            let t = Instant::now();
            generate()?;
            g = g.min(t.elapsed().as_secs_f64());
        }
        if mode != "gen" {
            let t = Instant::now();
            let verdict = verify_claim(model.clone(), prompt, &params, &ids)?;
            v = v.min(t.elapsed().as_secs_f64());
            assert!(verdict.valid);
        }
    }
    eprintln!(
        "{} tokens: generate {g:.3}s verify {v:.3}s ratio {:.3}",
        ids.len(),
        v / g
    );
    Ok(())
}
