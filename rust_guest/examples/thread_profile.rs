//! Where the second core's time goes in a decode (issue 24): wall and CPU time per token, and
//! how often threads went to sleep, for a real checkpoint (mode `decode`), or the 110M int8
//! decode's products alone on synthetic weights (mode `regions`), run four ways: on one
//! thread; through [`Threads`] as the transformer runs them; with the threads never joining
//! (each computes its half of every product: the hardware's bound for two threads); and with
//! a spinning barrier between products (the join's cost without waking a sleeping thread).
//!
//! CPU time is getrusage's for the whole process (every thread), so a figure
//! taken while other processes run still says how much work a token cost.
//! Usage: thread_profile decode <checkpoint> <tokenizer> <threads> <steps> [repeats]
//!        thread_profile regions <threads> <tokens> [repeats]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use edgechain_guest::parallel::Threads;
use edgechain_guest::q8::matvec_q8;
use edgechain_guest::{GenerationParams, LoadedModel, Session};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// Linux's `struct rusage` (x86_64 and aarch64).
#[repr(C)]
struct Rusage {
    user: Timeval,
    system: Timeval,
    /// maxrss .. nsignals, then nvcsw, nivcsw.
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// Nanoseconds of CPU this process has used (every thread, finished ones too), and its
/// threads' voluntary context switches (each a sleep).
fn cpu_and_switches() -> (u64, u64) {
    let mut u = Rusage {
        user: Timeval { sec: 0, usec: 0 },
        system: Timeval { sec: 0, usec: 0 },
        rest: [0; 14],
    };
    // SAFETY: RUSAGE_SELF (0) into a struct of the kernel's layout.
    if unsafe { getrusage(0, &mut u) } != 0 {
        return (0, 0);
    }
    let us = |t: &Timeval| (t.sec * 1_000_000 + t.usec) as u64;
    ((us(&u.user) + us(&u.system)) * 1000, u.rest[12] as u64)
}

/// Wall, CPU and switches of `f`, per `per` units.
fn measure(label: &str, per: usize, f: impl FnOnce()) -> (f64, f64) {
    let (c0, s0) = cpu_and_switches();
    let t0 = Instant::now();
    f();
    let wall = t0.elapsed().as_secs_f64() * 1e3 / per as f64;
    let (c1, s1) = cpu_and_switches();
    let cpu = (c1 - c0) as f64 / 1e6 / per as f64;
    println!(
        "{label:<28} {wall:8.3} ms wall {cpu:8.3} ms cpu {:8.1} sleeps  per token",
        (s1 - s0) as f64 / per as f64
    );
    (wall, cpu)
}

fn decode(args: &[String]) -> Res<()> {
    let threads: usize = args[4].parse()?;
    let steps: usize = args[5].parse()?;
    let repeats: usize = args.get(6).map_or(Ok(1), |s| s.parse())?;
    let model = LoadedModel::from_files(args[2].as_ref(), args[3].as_ref())?;
    let model = Arc::new(model.with_threads(Threads::new(threads)?));
    let params = GenerationParams {
        temperature: 0.0,
        max_positions: Some(steps),
        ..GenerationParams::default()
    };
    for _ in 0..repeats {
        let mut s = Session::start(model.clone(), "Once upon a time", &params)?;
        s.step()?;
        let mut n = 0;
        let mut err = None;
        measure(&format!("decode {threads} threads"), steps, || loop {
            match s.step() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        println!("  ({n} tokens; figures above are per `steps`, {steps})");
    }
    Ok(())
}

/// One int8 matrix: rows x cols values, one scale per group of 32.
struct Mat {
    rows: usize,
    cols: usize,
    w: Vec<i8>,
    s: Vec<f32>,
}

const GS: usize = 32;

impl Mat {
    fn new(rows: usize, cols: usize, seed: &mut u64) -> Self {
        let mut next = || {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (*seed >> 33) as u32
        };
        let w = (0..rows * cols).map(|_| next() as i8).collect();
        let s = (0..rows * cols / GS)
            .map(|_| (next() % 1000) as f32 / 1e5)
            .collect();
        Self { rows, cols, w, s }
    }

    /// Rows r0..r1 of W x into out.
    fn rows(&self, out: &mut [f32], r0: usize, r1: usize, x: &Input) {
        let (c, g) = (self.cols, self.cols / GS);
        matvec_q8(
            out,
            &self.w[r0 * c..r1 * c],
            &self.s[r0 * g..r1 * g],
            &x.q[..c],
            &x.s[..g],
            GS,
        );
    }
}

struct Input {
    q: Vec<i16>,
    s: Vec<f32>,
}

/// The 110M shape's products, grouped as the transformer's parallel regions for one token.
struct Model {
    /// Per layer: [wq, wk, wv], [wo], [w1, w3], [w2].
    layers: Vec<[Vec<Mat>; 4]>,
    cls: Mat,
}

fn model() -> Model {
    let (dim, hidden, layers, vocab) = (768, 2048, 12, 32000);
    let mut seed = 7;
    let layers = (0..layers)
        .map(|_| {
            [
                (0..3).map(|_| Mat::new(dim, dim, &mut seed)).collect(),
                vec![Mat::new(dim, dim, &mut seed)],
                (0..2).map(|_| Mat::new(hidden, dim, &mut seed)).collect(),
                vec![Mat::new(dim, hidden, &mut seed)],
            ]
        })
        .collect();
    Model {
        layers,
        cls: Mat::new(vocab, dim, &mut seed),
    }
}

/// Every region of one token, in order.
fn regions(m: &Model) -> Vec<&[Mat]> {
    let mut r: Vec<&[Mat]> = Vec::new();
    for l in &m.layers {
        for g in l {
            r.push(g);
        }
    }
    r.push(std::slice::from_ref(&m.cls));
    r
}

/// Half `h` of `n` rows, cut at a multiple of 8.
fn half(n: usize, h: usize, parts: usize) -> (usize, usize) {
    let chunk = n.div_ceil(parts).div_ceil(8) * 8;
    ((h * chunk).min(n), ((h + 1) * chunk).min(n))
}

/// A barrier that spins (the cost of a join when nobody sleeps).
struct Spin {
    count: AtomicUsize,
    generation: AtomicUsize,
    n: usize,
}

impl Spin {
    fn wait(&self) {
        let g = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == g {
                std::hint::spin_loop();
            }
        }
    }
}

fn run_regions(args: &[String]) -> Res<()> {
    let threads: usize = args[2].parse()?;
    let tokens: usize = args[3].parse()?;
    let repeats: usize = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let m = model();
    let regs = regions(&m);
    let x = Input {
        q: (0..2048).map(|i| (i % 251) as i16 - 125).collect(),
        s: vec![0.01; 2048 / GS],
    };
    let mut outs: Vec<Vec<Vec<f32>>> = regs
        .iter()
        .map(|r| r.iter().map(|m| vec![0.0; m.rows]).collect())
        .collect();
    let pool = Threads::new(threads)?;
    for _ in 0..repeats {
        measure("one thread", tokens, || {
            for _ in 0..tokens {
                for (r, o) in regs.iter().zip(outs.iter_mut()) {
                    for (m, o) in r.iter().zip(o.iter_mut()) {
                        m.rows(o, 0, m.rows, &x);
                    }
                }
            }
        });
        measure(&format!("Threads({threads}) regions"), tokens, || {
            pool.run(true, || {
                for _ in 0..tokens {
                    for (r, o) in regs.iter().zip(outs.iter_mut()) {
                        let cols = r[0].cols;
                        match o.len() {
                            1 => pool.split_rows(&mut o[0], 1, cols, |r0, n, o| {
                                r[0].rows(o, r0, r0 + n, &x)
                            }),
                            2 => {
                                let (a, b) = o.split_at_mut(1);
                                pool.split_rows_pair(&mut a[0], &mut b[0], cols, |r0, n, a, b| {
                                    r[0].rows(a, r0, r0 + n, &x);
                                    r[1].rows(b, r0, r0 + n, &x);
                                })
                            }
                            _ => {
                                let [a, b, c] = &mut o[..] else {
                                    unreachable!()
                                };
                                pool.split_rows_many([a, b, c], cols, |i, r0, n, o| {
                                    r[i].rows(o, r0, r0 + n, &x)
                                })
                            }
                        }
                    }
                }
            })
        });
        let by_hand = |sync: bool| {
            let spin = Spin {
                count: AtomicUsize::new(0),
                generation: AtomicUsize::new(0),
                n: threads,
            };
            std::thread::scope(|sc| {
                for h in 0..threads {
                    let (regs, x, spin) = (&regs, &x, &spin);
                    sc.spawn(move || {
                        let mut outs: Vec<Vec<f32>> = vec![vec![0.0; 32000]; 3];
                        for _ in 0..tokens {
                            for r in regs.iter() {
                                for (m, o) in r.iter().zip(outs.iter_mut()) {
                                    let (r0, r1) = half(m.rows, h, threads);
                                    m.rows(&mut o[r0..r1], r0, r1, x);
                                }
                                if sync {
                                    spin.wait();
                                }
                            }
                        }
                    });
                }
            });
        };
        measure(&format!("{threads} threads, no joins"), tokens, || {
            by_hand(false)
        });
        measure(&format!("{threads} threads, spin barrier"), tokens, || {
            by_hand(true)
        });
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("decode") if args.len() >= 6 => decode(&args),
        Some("regions") if args.len() >= 4 => run_regions(&args),
        _ => Err("usage: thread_profile decode <checkpoint> <tokenizer> <threads> <steps> [repeats]\n       thread_profile regions <threads> <tokens> [repeats]".into()),
    }
}
