//! A real Ray head on loopback for the `ray:` executor's tests: Ray from PyPI in the
//! project's `ray` venv (`scripts/venv.py ray`), started with `ray start --head`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub struct RayHead {
    /// The dashboard (Jobs API) address.
    pub url: String,
    bin: PathBuf,
    gcs_port: u16,
    dashboard_port: u16,
    cpus: usize,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RayHead {
    /// A head with `cpus` CPUs, or why there is none (Ray cannot be installed here).
    pub fn start(cpus: usize) -> Result<RayHead, String> {
        let python = super::venv::python("ray")?;
        let bin = PathBuf::from(python).with_file_name("ray");
        let (gcs_port, dashboard_port) = (free_port(), free_port());
        let head = RayHead {
            url: format!("http://127.0.0.1:{dashboard_port}"),
            bin,
            gcs_port,
            dashboard_port,
            cpus,
        };
        head.up()?;
        Ok(head)
    }

    fn ray(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("RAY_USAGE_STATS_ENABLED", "0")
            .env_remove("MERGEC_CANDIDATE_FAULT");
        c
    }

    /// Starts the head (again, on the same ports) and waits for its Jobs API.
    pub fn up(&self) -> Result<(), String> {
        let out = self
            .ray()
            .args([
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                "--include-dashboard=true",
                "--disable-usage-stats",
            ])
            .arg(format!("--port={}", self.gcs_port))
            .arg(format!("--dashboard-port={}", self.dashboard_port))
            .arg(format!("--num-cpus={}", self.cpus))
            .arg("--num-gpus=0")
            .output()
            .map_err(|e| format!("ray start: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ray start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let t0 = std::time::Instant::now();
        while t0.elapsed().as_secs() < 60 {
            if ureq::get(format!("{}/api/version", self.url))
                .call()
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        Err(format!(
            "the Ray head's dashboard at {} never answered",
            self.url
        ))
    }

    /// Stops the head and everything on it (its jobs included), as a lost head node.
    pub fn down(&self) {
        let _ = self.ray().args(["stop", "--force"]).output();
    }

    /// The status of the job with this submission id (None: unknown to the head).
    pub fn job_status(&self, id: &str) -> Option<String> {
        let mut r = ureq::get(format!("{}/api/jobs/{id}", self.url))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        let v: serde_json::Value = r.body_mut().read_json().ok()?;
        v["status"].as_str().map(String::from)
    }
}

impl Drop for RayHead {
    fn drop(&mut self) {
        self.down();
    }
}
