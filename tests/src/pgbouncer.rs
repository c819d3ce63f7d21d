//! A PgBouncer of a test's own in transaction pooling mode, on a free loopback port, in front of
//! the shared PostgreSQL's `test` database, with a small server pool (so clients share server
//! connections and a statement relying on its session fails). It runs under a shell watchdog
//! that stops it when the test process is gone however it ended; dropping it stops it at once.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pooler; dropping it stops it and removes its files.
pub struct OwnPgBouncer {
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnPgBouncer {
    /// Starts PgBouncer (`pool_mode = transaction`, 4 server connections) in front of
    /// `127.0.0.1:5432/test` and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let dir = std::env::temp_dir().join(format!("asynctasq-pgbouncer-{}-{:08x}", std::process::id(), crate::fastrand_u32()));
        std::fs::create_dir_all(&dir).expect("pgbouncer dir");
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\ntest = host=127.0.0.1 port=5432 dbname=test user=postgres\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = any\n\
                 pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits,options\nlogfile = {}/pgbouncer.log\n",
                dir.display()
            ),
        )
        .expect("pgbouncer.ini");
        // PgBouncer refuses to run as root: then it runs as the postgres user, which must be able
        // to write its log.
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().expect("chown");
            assert!(status.success(), "chown the pgbouncer dir");
        }
        let watched = r#"pgbouncer "$@" & s=$!
trap 'kill $s 2>/dev/null; wait $s; rm -rf "$DIR"; exit 0' TERM
while kill -0 "$OWNER" 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done
kill $s 2>/dev/null; wait $s; rm -rf "$DIR""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", watched, "pgbouncer-node"]);
        if root {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(&ini)
            .env("OWNER", std::process::id().to_string())
            .env("DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh and pgbouncer must be installed (scripts/test installs them)");
        let bouncer = Self { port, dir, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("psql").arg(bouncer.url()).args(["-Atc", "SELECT 1"]).output().expect("psql");
            if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                break;
            }
            assert!(Instant::now() < deadline, "own PgBouncer did not start: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// `postgres://postgres@127.0.0.1:<port>/test`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }
}

impl Drop for OwnPgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::sigterm(&child);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
