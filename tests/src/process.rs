//! The server as a separate process, for what only a process can show: `kill -9`.

use crate::WAIT;
use baton_server::Storage;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `baton-server serve --demo` process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Start `bin` on `data_dir` and `storage`, and wait until it is ready.
    pub async fn start(bin: &Path, data_dir: &Path, storage: &Storage) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(bin);
        command
            .args(["serve", "--demo", "--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .env("BATON_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Storage::Postgres(url) = storage {
            command.args(["--database-url", url]);
        }
        let child = command.spawn().unwrap();
        let process = ServerProcess {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
                drop(stream);
                let (status, _) = crate::http(addr, "GET", "/readyz", None).await;
                if status == 200 {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not become ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        process
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
