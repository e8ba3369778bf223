//! A Tansu broker process owned by a test, so the test can stop, freeze and restart it.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Tansu {
    bin: String,
    port: u16,
    child: Option<Child>,
}

impl Tansu {
    /// Starts a broker on a free loopback port; `TANSU_BIN` names the binary.
    pub fn start() -> Self {
        let bin = std::env::var("TANSU_BIN")
            .expect("TANSU_BIN must name the Tansu broker binary (scripts/test-services.sh sets it)");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut tansu = Self { bin, port, child: None };
        tansu.restart();
        tansu
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start TANSU_BIN={}: {e}", self.bin));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "Tansu did not listen on port {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL); with memory storage its topics and offsets are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: an unresponsive broker that keeps its data.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("broker not running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.as_ref().map(|c| c.id().to_string()).unwrap_or_default()])
                .status();
        }
        self.kill();
    }
}
