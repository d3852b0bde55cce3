//! Saving retained messages and persistent sessions to the data directory.
//!
//! The router takes a [`Snapshot`] of its state and a blocking task writes it atomically (write to
//! a temporary file, fsync, rename, fsync the directory), like Mosquitto's autosave. Crash
//! guarantees: after a graceful shutdown nothing is lost; after a crash or power loss the state is
//! that of the last completed autosave (at most `autosave_interval_secs` old), never a torn file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::auth::SessionOwner;

const FILE_NAME: &str = "broker.snapshot";
const MAGIC: &[u8; 8] = b"IBSNAP01";

/// Everything the broker keeps across restarts.
///
/// The file is the magic, this struct, then [`SessionOwners`]: fields added later go into
/// sections after the first, so a snapshot written by an earlier version (without them) still
/// loads.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub retained: Vec<MessageRecord>,
    pub sessions: Vec<SessionRecord>,
    /// The owner of each session, index by index; written as its own section.
    #[serde(skip)]
    pub session_owners: Vec<SessionOwner>,
}

/// The second section of the file: who owns each session of the first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionOwners(Vec<SessionOwner>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// Seconds of message expiry left when saved.
    pub expires_in: Option<u32>,
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(ByteString, ByteString)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub message: MessageRecord,
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InflightRecord {
    Publish(Box<DeliveryRecord>),
    Released,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub filter: ByteString,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub id: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub client_id: ByteString,
    pub expiry: u32,
    /// Seconds left before an offline session expires, when saved.
    pub expires_in: Option<u32>,
    pub subscriptions: Vec<SubscriptionRecord>,
    pub inflight: Vec<(u16, InflightRecord)>,
    pub queued: Vec<DeliveryRecord>,
    pub qos2_incoming: Vec<u16>,
    /// A delayed will and the seconds left before it is due.
    pub will: Option<(u32, MessageRecord)>,
}

/// The snapshot file in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Uses `dir`, creating it if needed.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads the last snapshot. A missing file is an empty state; an unreadable one is moved aside
    /// (so the operator can inspect it) and the broker starts empty rather than refusing to start.
    pub fn load(&self) -> Snapshot {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Snapshot::default(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "Cannot read the broker snapshot; starting empty");
                return Snapshot::default();
            }
        };
        let decoded = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| "not an Ironbridge broker snapshot".to_string())
            .and_then(|body| decode(body).map_err(|e| e.to_string()));
        match decoded {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let aside = path.with_extension("corrupt");
                warn!(path = %path.display(), moved_to = %aside.display(), error = %e, "Broker snapshot is unreadable; starting empty");
                let _ = fs::rename(&path, &aside);
                Snapshot::default()
            }
        }
    }

    pub fn save(&self, snapshot: &Snapshot) -> io::Result<()> {
        let mut body = postcard::to_allocvec(snapshot).map_err(io::Error::other)?;
        let owners = SessionOwners(snapshot.session_owners.clone());
        body.extend(postcard::to_allocvec(&owners).map_err(io::Error::other)?);
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&body)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.path())?;
        // Make the rename itself durable.
        File::open(&self.dir)?.sync_all()
    }
}

/// The first section, then the owners when the file has them (files of earlier versions end
/// after the first section: their sessions have no known owner).
fn decode(body: &[u8]) -> Result<Snapshot, postcard::Error> {
    let (mut snapshot, rest) = postcard::take_from_bytes::<Snapshot>(body)?;
    let owners = match rest.is_empty() {
        true => Vec::new(),
        false => postcard::from_bytes::<SessionOwners>(rest)?.0,
    };
    snapshot.session_owners = (0..snapshot.sessions.len())
        .map(|i| owners.get(i).cloned().unwrap_or(SessionOwner::Unknown))
        .collect();
    Ok(snapshot)
}
