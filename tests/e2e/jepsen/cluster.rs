//! Three agent processes sharing one metadata file and one object store,
//! and the nemesis that kills and pauses them.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::common::garage::Garage;
use crate::common::s3_proxy::S3Proxy;
use crate::common::{Silt, file_url, sqlite_url, tempdir};

/// Where the agents keep their segments.
pub enum Store {
    Local,
    S3(Garage),
    /// The S3 server behind a fault-injecting proxy; agents get short
    /// object-store timeouts so that held-back replies count as lost.
    S3Proxied(Garage, S3Proxy),
}

/// The agents, and the URLs clients may use (updated as agents restart).
pub struct Cluster {
    agents: Vec<Mutex<Silt>>,
    urls: RwLock<Vec<String>>,
    store: Store,
    /// The environment of agents without injected faults.
    calm_env: Vec<(String, String)>,
    /// How many agents (the first ones) were started with fault settings.
    faulty: usize,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize, store: Store) -> Arc<Self> {
        Self::start_with_faults(n, store, &[], 0)
    }

    /// Starts `n` agents, the first `faulty` of them with `fault_env` set
    /// (see `src/faults.rs`), until [`Cluster::calm`].
    pub fn start_with_faults(
        n: usize,
        store: Store,
        fault_env: &[(&str, &str)],
        faulty: usize,
    ) -> Arc<Self> {
        let dir = tempdir();
        let meta = sqlite_url(dir.path().join("meta.db"));
        let mut args: Vec<String> = ["agent", "--metadata", &meta].map(String::from).to_vec();
        let envs = match &store {
            Store::Local => {
                args.extend([
                    "--object-store".into(),
                    file_url(&dir.path().join("objects")),
                ]);
                Vec::new()
            }
            Store::S3(g) => {
                args.extend(["--object-store".into(), format!("s3://{}/jepsen", g.bucket)]);
                g.env()
            }
            Store::S3Proxied(g, proxy) => {
                args.extend(
                    [
                        "--object-store",
                        &format!("s3://{}/jepsen", g.bucket),
                        "--object-store-attempt-timeout-ms",
                        "1000",
                        "--object-store-call-timeout-ms",
                        "10000",
                    ]
                    .map(String::from),
                );
                let mut env = g.env();
                for (k, v) in &mut env {
                    if k == "AWS_ENDPOINT_URL" {
                        v.clone_from(&proxy.endpoint);
                    }
                }
                env
            }
        };
        let agents: Vec<Silt> = (0..n)
            .map(|i| {
                let mut env = envs.clone();
                if i < faulty {
                    env.extend(
                        fault_env
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string())),
                    );
                }
                Silt::spawn(args.clone(), env)
            })
            .collect();
        let urls = agents.iter().map(|a| a.url.clone()).collect();
        Arc::new(Self {
            agents: agents.into_iter().map(Mutex::new).collect(),
            urls: RwLock::new(urls),
            store,
            calm_env: envs,
            faulty,
            _dir: dir,
        })
    }

    /// The sum over the agents' `/metrics` of every sample of `metric`.
    pub async fn scrape_sum(&self, metric: &str) -> u64 {
        let urls = self.urls.read().clone();
        let mut sum = 0.0;
        for url in urls {
            let Ok(res) = reqwest::get(format!("{url}/metrics")).await else {
                continue;
            };
            let text = res.text().await.unwrap_or_default();
            for line in text.lines() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                if name == metric {
                    let value = line.rsplit(' ').next().unwrap_or_default();
                    sum += value.parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        sum as u64
    }

    /// Restarts the agents started with fault settings without them.
    pub async fn calm(self: &Arc<Self>) {
        self.blocking(|c| {
            for i in 0..c.faulty {
                let mut a = c.agents[i].lock();
                a.restart_with_env(c.calm_env.clone());
                c.urls.write()[i] = a.url.clone();
            }
        })
        .await;
    }

    /// A random agent's URL (possibly one that is down or paused: clients
    /// find out as they would in production).
    pub fn pick(&self, rng: &mut impl RngExt) -> String {
        let urls = self.urls.read();
        urls[rng.random_range(0..urls.len())].clone()
    }

    /// The fault-injecting proxy, if the agents are behind one.
    pub fn proxy(&self) -> Option<&S3Proxy> {
        match &self.store {
            Store::S3Proxied(_, p) => Some(p),
            _ => None,
        }
    }

    pub fn any_url(&self) -> String {
        self.urls.read()[0].clone()
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> T + Send + 'static,
    ) -> T {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me)).await.unwrap()
    }

    /// Brings every agent back: paused ones continue, dead ones restart.
    pub async fn heal(self: &Arc<Self>) {
        self.blocking(|c| {
            for (i, a) in c.agents.iter().enumerate() {
                let mut a = a.lock();
                a.pause(false);
                if !a.is_running() {
                    a.start_again();
                    c.urls.write()[i] = a.url.clone();
                }
            }
        })
        .await;
    }
}

/// What the nemesis did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    pub kills: usize,
    pub pauses: usize,
    /// Metadata transactions and their retries, as the agents counted
    /// them (from `/metrics`).
    pub metadata_transactions: u64,
    pub metadata_retries: u64,
}

/// Every 1 to 3 s, SIGKILLs a random agent (restarting it 0.5 to 1.5 s
/// later) or SIGSTOPs one for 0.5 to 2.5 s, until `stop`; then heals.
pub async fn nemesis(cluster: Arc<Cluster>, seed: u64, stop: CancellationToken) -> Faults {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Faults::default();
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
    loop {
        let wait = ms(&mut rng, 1000, 3000);
        if tokio::time::timeout(wait, stop.cancelled()).await.is_ok() {
            break;
        }
        let victim = rng.random_range(0..cluster.agents.len());
        let down = if rng.random_bool(0.5) {
            faults.kills += 1;
            cluster
                .blocking(move |c| c.agents[victim].lock().kill())
                .await;
            ms(&mut rng, 500, 1500)
        } else {
            faults.pauses += 1;
            cluster
                .blocking(move |c| c.agents[victim].lock().pause(true))
                .await;
            ms(&mut rng, 500, 2500)
        };
        tokio::time::sleep(down).await;
        cluster.heal().await;
    }
    cluster.heal().await;
    faults
}
