//! The data directory holds secrets: the user database (service and cloud passwords), the API
//! token key, forwarding queues, the broker snapshot and OPC UA private keys. Like PostgreSQL's
//! data directory it is for the gateway's user alone: created 0700, whatever is in it tightened
//! to owner-only, and a directory that other users could write to is refused, because they could
//! replace the key or the database.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}: {error}")]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the data directory {path} is writable by {who} (mode {mode:04o}), who could replace its keys and database; \
         restrict it (`chmod 700 {path}`) or, if that is intended, set allow_insecure_data_dir: true (IRONBRIDGE_ALLOW_INSECURE_DATA_DIR=true)"
    )]
    Insecure {
        path: PathBuf,
        mode: u32,
        who: &'static str,
    },
}

/// Files the process creates from now on are for its owner only (0600, directories 0700).
/// Called once by the binary at start, as PostgreSQL does; process-wide by nature.
pub fn create_files_private() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates the data directory (0700) or checks an existing one, and takes group and other
/// permissions away from everything in it that the gateway owns (data written by earlier
/// versions was 0644).
pub fn prepare(dir: &Path, allow_insecure: bool) -> Result<(), DataDirError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| DataDirError::Create {
            path: dir.to_path_buf(),
            error,
        })?;
    let metadata = std::fs::metadata(dir).map_err(|error| DataDirError::Create {
        path: dir.to_path_buf(),
        error,
    })?;
    let mode = metadata.mode() & 0o7777;
    if let Some(who) = writable_by_others(mode, metadata.gid()) {
        let error = DataDirError::Insecure {
            path: dir.to_path_buf(),
            mode,
            who,
        };
        if !allow_insecure {
            return Err(error);
        }
        warn!(%error, "Running with an insecure data directory because allow_insecure_data_dir is set");
        return Ok(());
    }
    tighten(dir);
    Ok(())
}

/// Who besides the owner may write to a directory of `mode` owned by group `gid`. Writable by
/// the gateway's own group is fine: Kubernetes' `fsGroup` volumes are group-writable, and that
/// group is the pod's.
fn writable_by_others(mode: u32, gid: u32) -> Option<&'static str> {
    if mode & 0o002 != 0 {
        return Some("every user");
    }
    if mode & 0o020 != 0 && gid != rustix::process::getegid().as_raw() {
        return Some("its group");
    }
    None
}

/// Removes group and other permissions from `dir` and everything below it that this process
/// owns; what it does not own (a mounted volume's root) is left as it is.
fn tighten(dir: &Path) {
    let me = rustix::process::geteuid().as_raw();
    let mut pending = vec![dir.to_path_buf()];
    let mut changed = 0usize;
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.file_type().is_symlink() {
            continue;
        }
        if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
        let mode = metadata.mode() & 0o7777;
        if metadata.uid() != me || mode & 0o077 == 0 {
            continue;
        }
        let private = std::fs::Permissions::from_mode(mode & !0o077);
        match std::fs::set_permissions(&path, private) {
            Ok(()) => changed += 1,
            Err(e) => warn!(path = %path.display(), error = %e, "Cannot make a data file private"),
        }
    }
    if changed > 0 {
        info!(dir = %dir.display(), files = changed, "Made data files readable by the gateway's user only");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed file operation is the test failing.
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_is_private_and_old_files_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        prepare(&dir, false).unwrap();
        assert_eq!(mode_of(&dir), 0o700);

        // What an earlier version left behind.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("ironbridge.db");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sub = dir.join("forwarding");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir, false).unwrap();
        assert_eq!(
            (mode_of(&dir), mode_of(&db), mode_of(&sub)),
            (0o700, 0o600, 0o700)
        );
    }

    #[test]
    fn a_world_writable_data_dir_is_refused_unless_allowed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = prepare(&dir, false).unwrap_err().to_string();
        assert!(error.contains("writable by every user"), "{error}");
        assert!(error.contains("chmod 700"), "{error}");
        prepare(&dir, true).unwrap();
        assert_eq!(mode_of(&dir), 0o777, "the override changes nothing");
    }
}
