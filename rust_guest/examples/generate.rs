//! Prints a generation like run.c (prompt, then pieces) and reports decode speed on stderr.
//! Usage: generate <checkpoint> <tokenizer> <prompt> [params-json]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use edgechain_guest::{GenerationParams, LoadedModel, Session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: generate <checkpoint> <tokenizer> <prompt> [params-json]".into());
    }
    let model = Arc::new(LoadedModel::load(
        &std::fs::read(&args[1])?,
        &std::fs::read(&args[2])?,
    )?);
    let params = match args.get(4) {
        Some(json) => GenerationParams::from_json(json)?,
        None => GenerationParams::default(),
    };
    let mut session = Session::start(model, &args[3], &params)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&session.prompt_text())?;
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    while let Some((_, bytes)) = session.step()? {
        first.get_or_insert_with(Instant::now);
        stdout.write_all(&bytes)?;
    }
    stdout.write_all(b"\n")?;
    let done = Instant::now();
    let n = session.generated_tokens();
    let decode = first.map(|f| (done - f).as_secs_f64()).unwrap_or(0.0);
    eprintln!(
        "prompt {} tokens, generated {n}, stop {:?}; total {:.3}s; decode {:.1} tok/s (after the first token)",
        session.prompt_tokens(),
        session.stop_reason(),
        (done - started).as_secs_f64(),
        if decode > 0.0 { (n.saturating_sub(1)) as f64 / decode } else { 0.0 },
    );
    Ok(())
}
