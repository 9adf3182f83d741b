//! Where a schedule request's time goes, stage by stage, printed as figures (not a timed test).
//!
//! `cargo bench --bench schedule_path` runs each stage of `GET /perturbations/...` on its own over
//! the shipped model set, at n=100 and n=25,000 windows, and prints the median and best of several
//! runs: drawing the windows (noise and inference on the engine's threads), encoding them (npy,
//! JSON), and storing the job (a SQLite file; PostgreSQL when IPET_BENCH_POSTGRES_URL or the
//! default local server answers). `benches/serve.rs` measures the same path end to end over HTTP.

mod common;

use std::{sync::Arc, time::Instant};

use ipet::{
    models::{Engine, GenerationChoice, schedule},
    store::{PerturbationJob, Store},
    traffic::noise,
};

const RUNS: usize = 15;

fn figures(label: &str, mut secs: Vec<f64>) {
    secs.sort_by(f64::total_cmp);
    println!("{label:<44} | median {:>8.3} ms | best {:>8.3} ms", secs[secs.len() / 2] * 1e3, secs[0] * 1e3);
}

async fn timed<F: std::future::Future<Output = ()>>(mut f: impl FnMut() -> F) -> Vec<f64> {
    f().await;
    let mut out = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed().as_secs_f64());
    }
    out
}

fn job(schedule: ipet::models::Schedule, n: usize) -> PerturbationJob {
    PerturbationJob {
        id: uuid::Uuid::new_v4(),
        device: "lockly-hub-01".into(),
        generation: "mix".into(),
        n,
        seed: None,
        model_set: "bench@1".into(),
        created_at: chrono::Utc::now(),
        requester: "bench".into(),
        schedule,
    }
}

async fn stages(engine: &Arc<Engine>, stores: &[(&str, Store)]) {
    let device = engine.model_set().require_device("lockly-hub-01").expect("device");
    for n in [100, 25_000] {
        let draw = || async {
            engine.sample(device, n, GenerationChoice::Mix, &mut noise::rng(None)).await.expect("sample");
        };
        figures(&format!("n={n:<6} draw (noise + generators)"), timed(draw).await);
        let key = schedule::NoiseKey::draw(&mut noise::rng(None));
        let latent = engine.model_set().latent_dim();
        let noise_only = || async {
            std::hint::black_box(key.noise(0, n, latent));
        };
        figures(&format!("n={n:<6}   of which the noise, on one thread"), timed(noise_only).await);
        let schedule = engine.sample(device, n, GenerationChoice::Mix, &mut noise::rng(None)).await.expect("sample");
        let s = &schedule;
        figures(
            &format!("n={n:<6} encode npy"),
            timed(|| async {
                std::hint::black_box(s.to_npy());
            })
            .await,
        );
        let json = || async {
            std::hint::black_box(s.encode(schedule::Encoding::JsonRows));
        };
        figures(&format!("n={n:<6} encode JSON rows"), timed(json).await);
        for (name, store) in stores {
            let insert = || async {
                store.insert_perturbation(job(s.clone(), n)).await.expect("insert");
            };
            figures(&format!("n={n:<6} store the job ({name})"), timed(insert).await);
        }
    }
}

fn main() {
    let engine = common::engine();
    common::block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = common::sqlite_url(&dir);
        let mut stores = vec![("sqlite", Store::connect(&sqlite, 8).await.expect("sqlite"))];
        let pg = common::Postgres::create("ipet_stages").await;
        if let Some(pg) = &pg {
            stores.push(("postgres", Store::connect(&pg.url, 8).await.expect("postgres")));
        }
        stages(&engine, &stores).await;
        drop(stores);
        if let Some(pg) = pg {
            pg.drop_database().await;
        }
    });
}
