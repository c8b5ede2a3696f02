//! The avatar pipeline benchmark (docs/PERFORMANCE.md, "Avatar pipeline").
//!
//! Makes a photo-like 12-megapixel JPEG of about 4 MB (gradients plus per-pixel noise, so it
//! does not compress to nothing), runs it through `AvatarPipeline::process` sequentially and
//! at concurrency 2 (the pipeline's own admission: one slot per core), and reports latency
//! percentiles and the peak RSS of each phase (VmHWM, reset before each phase through
//! /proc/self/clear_refs). Then the same for the largest accepted upload (a 40-megapixel
//! JPEG), and the cost of refusing a pixel bomb from its header.
//!
//! `cargo run --release -p keyward-bench --bin avatars -- [--runs N]`; prints Markdown.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, Rgb, RgbImage};
use keyward_actors::avatars::{process_blocking, AvatarPipeline, Limits, ADMISSION_WAIT};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(about = "Times the avatar pipeline (docs/PERFORMANCE.md)")]
struct Args {
    /// Pipeline runs of the 12-megapixel photo per phase.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Runs of the 40-megapixel upload.
    #[arg(long, default_value_t = 3)]
    large_runs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let limits = Limits::default();
    let pipeline = AvatarPipeline::new(limits, cores, ADMISSION_WAIT);

    println!("## Avatar pipeline run\n");
    println!("- cpu: {} × {}", cores, cpu_model());
    println!("- load average at start: {}", load_average());
    let (photo, noise) = photo_jpeg(4000, 3000, 3_500_000..=4_800_000)?;
    println!(
        "- input: 4000×3000 JPEG (q92, noise ±{noise}), {} bytes",
        photo.len()
    );

    // Warm-up (page faults of the first run, lazy statics).
    let warm = process_blocking("image/jpeg", &photo, &limits)?;
    let sizes: Vec<String> = warm
        .sizes
        .iter()
        .map(|r| format!("{} px {} {} B", r.px, r.ext, r.bytes.len()))
        .collect();
    println!("- output: {}", sizes.join(", "));
    drop(warm);
    println!();
    println!("| phase | runs | p50 | p99 | max | throughput | RSS before | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|");

    // The share of the JPEG decoder alone, for the same input.
    let mut decodes = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let t = Instant::now();
        image::load_from_memory_with_format(&photo, image::ImageFormat::Jpeg)?;
        decodes.push(t.elapsed());
    }
    decodes.sort();
    println!(
        "| 12 MP photo, JPEG decode only (no pipeline) | {} | {:.0} ms | {:.0} ms | | | | |",
        decodes.len(),
        percentile(&decodes, 50).as_secs_f64() * 1e3,
        percentile(&decodes, 99).as_secs_f64() * 1e3,
    );

    let photo = Bytes::from(photo);
    phase(
        &runtime,
        &pipeline,
        "12 MP photo, sequential",
        &photo,
        args.runs,
        1,
    )?;
    phase(
        &runtime,
        &pipeline,
        "12 MP photo, concurrency 2",
        &photo,
        args.runs,
        2,
    )?;
    drop(photo);

    let (large, _) = photo_jpeg(7300, 5475, 1..=limits.max_bytes)?;
    let large = Bytes::from(large);
    phase(
        &runtime,
        &pipeline,
        &format!("40 MP (7300×5475, {} B), sequential", large.len()),
        &large,
        args.large_runs,
        1,
    )?;
    drop(large);

    let bomb = jpeg_bomb()?;
    let n = 1000;
    let started = Instant::now();
    for _ in 0..n {
        if process_blocking("image/jpeg", &bomb, &limits).is_ok() {
            bail!("the pixel bomb was accepted");
        }
    }
    println!(
        "\n- a {} B JPEG claiming 65000×65000 is refused in {:.1} µs (mean of {n})",
        bomb.len(),
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
    println!("- load average at the end: {}", load_average());
    Ok(())
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows up here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Runs `runs` uploads with `concurrency` in flight and prints one table row.
fn phase(
    runtime: &tokio::runtime::Runtime,
    pipeline: &AvatarPipeline,
    name: &str,
    body: &Bytes,
    runs: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let before = status_kib("VmRSS")?;
    reset_peak_rss()?;
    let started = Instant::now();
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let pipeline = pipeline.clone();
            let body = body.clone();
            let share = runs / concurrency + usize::from(worker < runs % concurrency);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(share);
                for _ in 0..share {
                    let t = Instant::now();
                    pipeline.process("image/jpeg", body.clone()).await?;
                    out.push(t.elapsed());
                }
                anyhow::Ok(out)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    let wall = started.elapsed();
    let peak = status_kib("VmHWM")?;
    latencies.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    println!(
        "| {name} | {} | {} | {} | {} | {:.1}/s | {:.0} MiB | {:.0} MiB |",
        latencies.len(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len() as f64 / wall.as_secs_f64(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// A JPEG of `width × height` whose size falls in `wanted`: gradients and soft shapes plus
/// uniform noise, the noise amplitude searched until the size fits. Returns it and the noise.
fn photo_jpeg(
    width: u32,
    height: u32,
    wanted: std::ops::RangeInclusive<usize>,
) -> anyhow::Result<(Vec<u8>, i32)> {
    let (mut low, mut high) = (0i32, 64i32);
    let mut noise = 12;
    for _ in 0..8 {
        let jpeg = encode(&photo(width, height, noise), 92)?;
        if wanted.contains(&jpeg.len()) {
            return Ok((jpeg, noise));
        }
        if jpeg.len() > *wanted.end() {
            high = noise;
        } else {
            low = noise;
        }
        noise = (low + high) / 2;
    }
    bail!("no noise level gives a {width}×{height} JPEG of {wanted:?} bytes")
}

fn photo(width: u32, height: u32, noise: i32) -> RgbImage {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let ring = ((fx - 0.5).hypot(fy - 0.4) * 40.0).sin() * 40.0;
        let base = [
            fx * 200.0 + ring,
            fy * 180.0 + 30.0,
            (1.0 - fx) * 120.0 + fy * 60.0 - ring,
        ];
        let mut px = [0u8; 3];
        for (out, value) in px.iter_mut().zip(base) {
            let n = if noise > 0 {
                rng.gen_range(-noise..=noise)
            } else {
                0
            };
            *out = (value as i32 + n).clamp(0, 255) as u8;
        }
        Rgb(px)
    })
}

fn encode(img: &RgbImage, quality: u8) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).encode(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// A tiny JPEG whose frame header claims 65000×65000.
fn jpeg_bomb() -> anyhow::Result<Vec<u8>> {
    let mut jpeg = encode(&photo(32, 32, 0), 90)?;
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .context("no SOF0 in the JPEG")?;
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xfd, 0xe8, 0xfd, 0xe8]);
    Ok(jpeg)
}

/// A `Vm…` line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0).
fn reset_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".to_owned())
}
