//! A real single-node Garage S3 server on loopback, for the `s3://` suites.
//!
//! The binary comes from `SILT_GARAGE_BIN` or `garage` on the PATH (CI builds
//! it with `cargo install garage` into its cache). Without one, tests print
//! that they were skipped and why — unless `SILT_REQUIRE_S3=1`, which CI
//! sets, makes that a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Garage {
    child: Child,
    config: PathBuf,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SILT_GARAGE_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    })
}

impl Garage {
    /// Starts Garage, or returns `None` after saying why the test is skipped.
    pub fn start() -> Option<Self> {
        let Some(bin) = binary() else {
            let why = "no garage binary (set SILT_GARAGE_BIN or put garage on PATH; `cargo install garage`)";
            assert!(
                std::env::var("SILT_REQUIRE_S3").is_err(),
                "SILT_REQUIRE_S3 is set but there is {why}"
            );
            eprintln!("SKIPPED: S3 suite: {why}");
            return None;
        };
        let dir = super::tempdir();
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                d = dir.path().display(),
                secret = "0f".repeat(32),
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start garage");
        let mut g = Garage {
            child,
            config,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "silt".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        g.setup(&bin);
        Some(g)
    }

    fn cli(&self, bin: &PathBuf, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn setup(&mut self, bin: &PathBuf) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // `node id` reads the node's key from disk, so it can answer before
        // the server listens: wait for `status`, which asks the server.
        let node = loop {
            let ready = self
                .cli(bin, &["status"])
                .and_then(|_| self.cli(bin, &["node", "id", "-q"]));
            match ready {
                Ok(id) => break id.trim().split('@').next().unwrap().to_owned(),
                Err(e) if Instant::now() > deadline => panic!("garage did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        self.cli(bin, &["layout", "assign", "-z", "dc1", "-c", "1G", &node])
            .unwrap();
        self.cli(bin, &["layout", "apply", "--version", "1"])
            .unwrap();
        self.cli(bin, &["bucket", "create", &self.bucket]).unwrap();
        let key = self.cli(bin, &["key", "create", "silt-test"]).unwrap();
        let field = |name: &str| {
            key.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(name)
                        .map(|v| v.trim_start_matches([':', ' ']).trim().to_owned())
                })
                .unwrap_or_else(|| panic!("no {name} in {key}"))
        };
        self.key_id = field("Key ID");
        self.secret = field("Secret key");
        self.cli(
            bin,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &self.bucket,
                "--key",
                "silt-test",
            ],
        )
        .unwrap();
    }

    /// Environment for a `silt` process (or object_store) to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "garage"),
            ("AWS_ACCESS_KEY_ID", self.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
