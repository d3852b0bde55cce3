//! Debian's Mosquitto as the remote ("cloud") broker: started on a free loopback port with a
//! configuration of the test's choosing, stopped and started again on the same port with its
//! persistence intact, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Mosquitto {
    pub dir: tempfile::TempDir,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// `listener` is the rest of the listener section (TLS files, `require_certificate`,
    /// `protocol websockets`, ...); `extra` goes at the end (`password_file`, more listeners).
    /// `{dir}` in either stands for the broker's folder, where `prepare` can write the files
    /// the configuration names.
    pub fn start(listener: &str, extra: &str, prepare: impl FnOnce(&Path)) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        // Started as root, Mosquitto drops to the `mosquitto` user: it must still write its
        // persistence file and log here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        prepare(dir.path());
        let anonymous = if extra.contains("password_file") {
            "false"
        } else {
            "true"
        };
        let folder = dir.path().display().to_string();
        let (listener, extra) = (
            listener.replace("{dir}", &folder),
            extra.replace("{dir}", &folder),
        );
        let config = dir.path().join("mosquitto.conf");
        let mut mosquitto = Mosquitto {
            dir,
            port: 0,
            config,
            child: None,
        };
        // A port free when chosen can be taken (by another test's listener) before Mosquitto
        // binds it; then Mosquitto exits, and it starts again on another port.
        for attempt in 1..=3 {
            mosquitto.port = free_port();
            let text = format!(
                "per_listener_settings false\n\
                 persistence true\n\
                 persistence_location {dir}/\n\
                 autosave_interval 1\n\
                 max_queued_messages 0\n\
                 max_inflight_messages 0\n\
                 log_dest file {dir}/mosquitto.log\n\
                 log_type all\n\
                 allow_anonymous {anonymous}\n\
                 listener {port} 127.0.0.1\n\
                 {listener}\n\
                 {extra}\n",
                dir = folder,
                port = mosquitto.port,
            );
            std::fs::write(&mosquitto.config, text).expect("write mosquitto.conf");
            match mosquitto.try_resume() {
                Ok(()) => return mosquitto,
                Err(problem) if attempt < 3 && problem.contains("in use") => continue,
                Err(problem) => panic!("{problem}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts Mosquitto (again) on the same port with the same persistence file.
    pub fn resume(&mut self) {
        self.try_resume()
            .unwrap_or_else(|problem| panic!("{problem}"));
    }

    /// Starts Mosquitto and waits until it listens: its own log says it runs and the port
    /// answers. An exit before that is an error with its log (a port taken says "in use").
    fn try_resume(&mut self) -> Result<(), String> {
        // The log is kept across restarts: this start's line is the next one.
        let runs_before = self.log().matches(" running").count();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package `mosquitto`) is installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "mosquitto exited ({status}) before listening on {}; its log: {}",
                    self.port,
                    self.log()
                ));
            }
            let running = self.log().matches(" running").count() > runs_before;
            if running && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "mosquitto did not listen on {} within 10 s; its log: {}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops Mosquitto the way an operator would (SIGTERM), so it saves its sessions.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
