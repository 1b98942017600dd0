//! The login baseline: raw argon2id verifications per second on this machine, with the same
//! parameters and thread count auth-svc uses.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 19_456)]
    memory_kib: u32,
    #[arg(long, default_value_t = 2)]
    iterations: u32,
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Threads verifying at once (default: number of CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let params = Params::new(args.memory_kib, args.iterations, args.parallelism, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon
        .hash_password(b"correct horse battery")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let threads = if args.threads > 0 {
        args.threads
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    };
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (argon, hash) = (argon.clone(), hash.clone());
                s.spawn(move || {
                    let parsed = PasswordHash::new(&hash).expect("hash parses");
                    let mut n = 0u64;
                    while Instant::now() < until {
                        argon
                            .verify_password(b"correct horse battery", &parsed)
                            .expect("verifies");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds()?;
    println!(
        "{}",
        serde_json::json!({"name": "argon2id-verify", "threads": threads, "verifications": total, "rate": rate, "cpu_s": cpu_s})
    );
    Ok(())
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (fields 14 and 15,
/// in USER_HZ ticks: 100 per second in Linux's ABI). Nearly all of it is verifications, so
/// `cpu_s / verifications` is the raw CPU cost of one.
fn process_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) is in parentheses and may contain spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/self/stat"))?
            .parse::<f64>()?)
    };
    // After the name, field 3 is index 0: utime (14) is index 11, stime (15) index 12.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
