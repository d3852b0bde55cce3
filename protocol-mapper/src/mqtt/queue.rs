//! The store-and-forward queue of one MQTT connection: QoS 1/2 messages for the remote broker,
//! in order, in a SQLite file under the data dir. Every such message is written here before it
//! is sent and removed only when the remote broker has acknowledged it (PUBACK, or PUBCOMP for
//! QoS 2), so the queue is the single truth about what is still owed, whether the link is up,
//! down or slow, and across restarts.
//!
//! Durability: the file runs in WAL mode. With [`Durability::Process`] (`synchronous=NORMAL`)
//! a committed batch survives the gateway being killed (kill -9, OOM killer, a panic): the data
//! is in the operating system's cache. With [`Durability::Power`] (`synchronous=FULL`) every
//! commit is also fsynced, so it survives power loss and kernel crashes, at the price of one
//! fsync per batch.
//!
//! Bounds: at most `max_bytes` of topics and payloads, and nothing older than `max_age`. When a
//! new batch would exceed the size, the oldest messages are dropped first and counted; expired
//! messages are dropped and counted the same way.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::bus::QueueCounters;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

/// Bytes a stored message costs beyond its topic and payload (sequence, time, flags, row).
const ROW_OVERHEAD: u64 = 32;

/// How many rows one statement deletes or reads at most, so no single query holds the file
/// for long (and stays far below SQLite's limit of 32,766 bound values).
const CHUNK: i64 = 512;

/// The newest messages are also kept in memory, so a link that keeps up sends them without
/// reading them back from the file. Bounded by count and by bytes.
const RECENT_MESSAGES: usize = 4096;
const RECENT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a killed process; the last moments before a power loss may be lost.
    #[default]
    Process,
    /// Survives power loss: every committed batch is fsynced.
    Power,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub durability: Durability,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
            durability: Durability::Process,
        }
    }
}

/// One message owed to the remote broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub payload: Bytes,
    /// 1 or 2: QoS 0 messages are never stored.
    pub qos: u8,
    pub retain: bool,
}

impl Record {
    fn size(&self) -> u64 {
        self.topic.len() as u64 + self.payload.len() as u64 + ROW_OVERHEAD
    }
}

/// A stored record and its place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: i64,
    pub record: Record,
}

pub struct Queue {
    pool: SqlitePool,
    limits: QueueLimits,
    counters: Arc<QueueCounters>,
    messages: u64,
    bytes: u64,
    /// The highest sequence number handed out; only ever grows, also across restarts.
    last_seq: i64,
    /// The newest messages, in order: every stored message with a sequence number above
    /// `recent_floor` is in here (and nothing that was deleted).
    recent: VecDeque<Stored>,
    recent_bytes: u64,
    recent_floor: i64,
}

impl Queue {
    /// Opens (or creates) the queue file; what an earlier run left in it is kept, in order.
    pub async fn open(
        path: &Path,
        limits: QueueLimits,
        counters: Arc<QueueCounters>,
    ) -> Result<Queue, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match limits.durability {
                Durability::Process => SqliteSynchronous::Normal,
                Durability::Power => SqliteSynchronous::Full,
            });
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open the queue {}: {e}", path.display()))?;
        // AUTOINCREMENT: sequence numbers never repeat, even after the newest row was deleted,
        // so order holds across restarts.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                enqueued_at INTEGER NOT NULL,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                qos INTEGER NOT NULL,
                retain INTEGER NOT NULL,
                size INTEGER NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(|e| format!("cannot prepare the queue {}: {e}", path.display()))?;
        // sqlite_sequence remembers the highest sequence number ever used, also when the queue
        // has since been emptied, so numbers are never reused.
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(size), 0), max(coalesce(max(seq), 0), coalesce(
                 (SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))
             FROM messages",
        )
        .fetch_one(&pool)
        .await
        .map_err(database)?;
        let last_seq = row.get(2);
        let queue = Queue {
            pool,
            limits,
            counters,
            messages: row.get::<i64, _>(0) as u64,
            bytes: row.get::<i64, _>(1) as u64,
            last_seq,
            recent: VecDeque::new(),
            recent_bytes: 0,
            recent_floor: last_seq,
        };
        queue.publish_counts();
        Ok(queue)
    }

    pub fn len(&self) -> u64 {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Stores a batch atomically, then drops the oldest messages while the queue is over its
    /// size. Returns how many were dropped.
    ///
    /// Sequence numbers are assigned here, not by SQLite, so the batch is one multi-row
    /// statement per [`CHUNK`] (each round trip to SQLite's thread costs more than the insert).
    pub async fn push(&mut self, records: &[Record], now_ms: i64) -> Result<u64, String> {
        if records.is_empty() {
            return Ok(0);
        }
        let first_seq = self.last_seq + 1;
        let numbered = records.iter().zip(first_seq..);
        if records.len() <= CHUNK as usize {
            insert(numbered, now_ms)
                .build()
                .execute(&self.pool)
                .await
                .map(drop)
        } else {
            let mut tx = self.pool.begin().await.map_err(database)?;
            let rows: Vec<_> = numbered.collect();
            for chunk in rows.chunks(CHUNK as usize) {
                insert(chunk.iter().copied(), now_ms)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(database)?;
            }
            tx.commit().await
        }
        .map_err(database)?;
        self.last_seq += records.len() as i64;
        self.messages += records.len() as u64;
        self.bytes += records.iter().map(Record::size).sum::<u64>();
        for (record, seq) in records.iter().zip(first_seq..) {
            self.remember(Stored {
                seq,
                record: record.clone(),
            });
        }
        let dropped = self.drop_oldest_over_limit().await?;
        self.publish_counts();
        Ok(dropped)
    }

    fn remember(&mut self, stored: Stored) {
        self.recent_bytes += stored.record.size();
        self.recent.push_back(stored);
        while self.recent.len() > RECENT_MESSAGES || self.recent_bytes > RECENT_BYTES {
            self.forget_oldest_recent();
        }
    }

    fn forget_oldest_recent(&mut self) {
        if let Some(oldest) = self.recent.pop_front() {
            self.recent_bytes -= oldest.record.size();
            self.recent_floor = oldest.seq;
        }
    }

    async fn drop_oldest_over_limit(&mut self) -> Result<u64, String> {
        let mut dropped = 0;
        while self.bytes > self.limits.max_bytes && self.messages > 0 {
            let excess = self.bytes - self.limits.max_bytes;
            let rows = sqlx::query("SELECT seq, size FROM messages ORDER BY seq LIMIT $1")
                .bind(CHUNK)
                .fetch_all(&self.pool)
                .await
                .map_err(database)?;
            let mut freed = 0u64;
            let mut through = 0i64;
            for row in &rows {
                through = row.get(0);
                freed += row.get::<i64, _>(1) as u64;
                if freed >= excess {
                    break;
                }
            }
            let (count, bytes) = self.delete_through(through).await?;
            dropped += count;
            self.forget(count, bytes);
        }
        self.counters
            .dropped_full
            .fetch_add(dropped, Ordering::Relaxed);
        Ok(dropped)
    }

    async fn delete_through(&mut self, seq: i64) -> Result<(u64, u64), String> {
        let row =
            sqlx::query("SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE seq <= $1")
                .bind(seq)
                .fetch_one(&self.pool)
                .await
                .map_err(database)?;
        sqlx::query("DELETE FROM messages WHERE seq <= $1")
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(database)?;
        while self.recent.front().is_some_and(|s| s.seq <= seq) {
            self.forget_oldest_recent();
        }
        Ok((row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64))
    }

    /// Up to `limit` messages after `after`, oldest first.
    pub async fn peek(&self, after: i64, limit: usize) -> Result<Vec<Stored>, String> {
        if after >= self.last_seq || limit == 0 {
            return Ok(Vec::new());
        }
        if after >= self.recent_floor {
            let start = self.recent.partition_point(|s| s.seq <= after);
            return Ok(self.recent.range(start..).take(limit).cloned().collect());
        }
        let rows = sqlx::query(
            "SELECT seq, topic, payload, qos, retain FROM messages
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind((limit as i64).min(CHUNK))
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        Ok(rows
            .iter()
            .map(|row| Stored {
                seq: row.get(0),
                record: Record {
                    topic: row.get(1),
                    payload: Bytes::from(row.get::<Vec<u8>, _>(2)),
                    qos: row.get::<i64, _>(3).clamp(1, 2) as u8,
                    retain: row.get::<i64, _>(4) != 0,
                },
            })
            .collect())
    }

    /// Removes messages the remote broker acknowledged. Unknown sequence numbers (already
    /// dropped as too old or too many) are ignored.
    pub async fn acknowledge(&mut self, seqs: &[i64]) -> Result<(), String> {
        let (mut count, mut bytes) = (0, 0);
        for chunk in seqs.chunks(CHUNK as usize) {
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM messages WHERE seq IN (");
            let mut list = delete.separated(", ");
            for &seq in chunk {
                list.push_bind(seq);
            }
            delete.push(") RETURNING size");
            let rows = delete
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(database)?;
            count += rows.len() as u64;
            bytes += rows.iter().map(|r| r.get::<i64, _>(0) as u64).sum::<u64>();
        }
        for &seq in seqs {
            // Acknowledgements come nearly in order, so this finds them at the front.
            if let Ok(at) = self.recent.binary_search_by_key(&seq, |s| s.seq)
                && let Some(gone) = self.recent.remove(at)
            {
                self.recent_bytes -= gone.record.size();
            }
        }
        self.forget(count, bytes);
        self.counters.delivered.fetch_add(count, Ordering::Relaxed);
        self.publish_counts();
        Ok(())
    }

    /// Drops messages enqueued before `now_ms - max_age`. Returns how many.
    ///
    /// Messages are enqueued in time order, so only the oldest rows are read (by sequence
    /// number, from the index); a clock set back only delays the expiry of what follows.
    pub async fn expire(&mut self, now_ms: i64) -> Result<u64, String> {
        let cutoff = now_ms - self.limits.max_age.as_millis() as i64;
        let mut expired = 0;
        loop {
            let rows = sqlx::query("SELECT seq, enqueued_at FROM messages ORDER BY seq LIMIT $1")
                .bind(CHUNK)
                .fetch_all(&self.pool)
                .await
                .map_err(database)?;
            let old = rows
                .iter()
                .take_while(|row| row.get::<i64, _>(1) < cutoff)
                .count();
            if old == 0 {
                break;
            }
            let (count, bytes) = self.delete_through(rows[old - 1].get(0)).await?;
            self.forget(count, bytes);
            expired += count;
            if old < rows.len() {
                break;
            }
        }
        self.counters
            .dropped_expired
            .fetch_add(expired, Ordering::Relaxed);
        self.publish_counts();
        Ok(expired)
    }

    fn forget(&mut self, count: u64, bytes: u64) {
        self.messages = self.messages.saturating_sub(count);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    fn publish_counts(&self) {
        self.counters
            .messages
            .store(self.messages, Ordering::Relaxed);
        self.counters.bytes.store(self.bytes, Ordering::Relaxed);
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// One multi-row INSERT of numbered records.
fn insert<'a>(rows: impl Iterator<Item = (&'a Record, i64)>, now_ms: i64) -> QueryBuilder<Sqlite> {
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO messages (seq, enqueued_at, topic, payload, qos, retain, size) ",
    );
    insert.push_values(rows, |mut row, (record, seq)| {
        row.push_bind(seq)
            .push_bind(now_ms)
            .push_bind(record.topic.clone())
            .push_bind(record.payload.to_vec())
            .push_bind(i64::from(record.qos))
            .push_bind(i64::from(record.retain))
            .push_bind(record.size() as i64);
    });
    insert
}

fn database(e: sqlx::Error) -> String {
    format!("store-and-forward queue: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record {
            topic: "plant/line1/count".into(),
            payload: Bytes::from(format!("{n:04}")),
            qos: 1,
            retain: false,
        }
    }

    async fn open(dir: &Path, limits: QueueLimits) -> (Queue, Arc<QueueCounters>) {
        let counters = Arc::new(QueueCounters::default());
        let queue = Queue::open(&dir.join("q.db"), limits, counters.clone())
            .await
            .expect("open");
        (queue, counters)
    }

    fn payloads(stored: &[Stored]) -> Vec<String> {
        stored
            .iter()
            .map(|s| String::from_utf8_lossy(&s.record.payload).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn keeps_order_across_reopen_and_acknowledgements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, _) = open(dir.path(), QueueLimits::default()).await;
        let batch: Vec<Record> = (0..5).map(record).collect();
        assert_eq!(queue.push(&batch, 0).await.expect("push"), 0);
        let first = queue.peek(0, 2).await.expect("peek");
        assert_eq!(payloads(&first), ["0000", "0001"]);
        queue.acknowledge(&[first[0].seq]).await.expect("ack");
        queue.close().await;

        let (mut queue, counters) = open(dir.path(), QueueLimits::default()).await;
        assert_eq!(queue.len(), 4);
        assert_eq!(counters.messages.load(Ordering::Relaxed), 4);
        let rest = queue.peek(0, 10).await.expect("peek");
        assert_eq!(payloads(&rest), ["0001", "0002", "0003", "0004"]);
        // New messages come after the old ones even though the newest row was never deleted
        // and sequence numbers could otherwise be reused.
        queue.acknowledge(&[rest[3].seq]).await.expect("ack");
        queue.push(&[record(5)], 0).await.expect("push");
        let all = queue.peek(0, 10).await.expect("peek");
        assert_eq!(payloads(&all), ["0001", "0002", "0003", "0005"]);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[tokio::test]
    async fn drops_the_oldest_when_full_and_counts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let per_record = record(0).size();
        let limits = QueueLimits {
            max_bytes: per_record * 3,
            ..QueueLimits::default()
        };
        let (mut queue, counters) = open(dir.path(), limits).await;
        let batch: Vec<Record> = (0..5).map(record).collect();
        assert_eq!(queue.push(&batch, 0).await.expect("push"), 2);
        assert_eq!(
            payloads(&queue.peek(0, 10).await.expect("peek")),
            ["0002", "0003", "0004"]
        );
        assert_eq!(counters.dropped_full.load(Ordering::Relaxed), 2);
        assert_eq!(counters.bytes.load(Ordering::Relaxed), per_record * 3);
    }

    #[tokio::test]
    async fn expires_messages_older_than_max_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = QueueLimits {
            max_age: Duration::from_secs(60),
            ..QueueLimits::default()
        };
        let (mut queue, counters) = open(dir.path(), limits).await;
        queue
            .push(&[record(0), record(1)], 1_000)
            .await
            .expect("push");
        queue.push(&[record(2)], 50_000).await.expect("push");
        assert_eq!(queue.expire(62_000).await.expect("expire"), 2);
        assert_eq!(payloads(&queue.peek(0, 10).await.expect("peek")), ["0002"]);
        assert_eq!(counters.dropped_expired.load(Ordering::Relaxed), 2);
        assert_eq!(queue.expire(62_000).await.expect("expire"), 0);
    }

    #[tokio::test]
    async fn acknowledging_twice_counts_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, counters) = open(dir.path(), QueueLimits::default()).await;
        queue.push(&[record(0)], 0).await.expect("push");
        let seq = queue.peek(0, 1).await.expect("peek")[0].seq;
        queue.acknowledge(&[seq, seq]).await.expect("ack");
        queue.acknowledge(&[seq]).await.expect("ack");
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 1);
        assert!(queue.is_empty());
        assert!(queue.peek(0, 10).await.expect("peek").is_empty());
    }

    /// Everything queued, read as the connection does: in pieces, each after the last.
    async fn read_all(queue: &Queue) -> Vec<Stored> {
        let mut all: Vec<Stored> = Vec::new();
        loop {
            let after = all.last().map_or(0, |s| s.seq);
            let next = queue.peek(after, 300).await.expect("peek");
            if next.is_empty() {
                return all;
            }
            all.extend(next);
        }
    }

    #[tokio::test]
    async fn reads_the_same_from_memory_as_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, _) = open(dir.path(), QueueLimits::default()).await;
        // More than fits in memory, in one batch of several statements and in small ones.
        let many: Vec<Record> = (0..RECENT_MESSAGES + 100).map(record).collect();
        queue.push(&many, 0).await.expect("push");
        for n in 0..10 {
            queue
                .push(&[record(RECENT_MESSAGES + 100 + n)], 0)
                .await
                .expect("push");
        }
        let from_live_queue = read_all(&queue).await;
        queue.close().await;

        let (reopened, _) = open(dir.path(), QueueLimits::default()).await;
        let from_file = read_all(&reopened).await;
        assert_eq!(from_live_queue.len(), RECENT_MESSAGES + 110);
        assert_eq!(from_live_queue, from_file);
        let expected: Vec<String> = (0..RECENT_MESSAGES + 110)
            .map(|n| format!("{n:04}"))
            .collect();
        assert_eq!(payloads(&from_file), expected);
    }

    #[tokio::test]
    async fn sequence_numbers_are_not_reused_after_the_queue_was_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, _) = open(dir.path(), QueueLimits::default()).await;
        queue.push(&[record(0), record(1)], 0).await.expect("push");
        let seqs: Vec<i64> = queue
            .peek(0, 2)
            .await
            .expect("peek")
            .iter()
            .map(|s| s.seq)
            .collect();
        queue.acknowledge(&seqs).await.expect("ack");
        assert!(queue.is_empty());
        queue.close().await;

        let (mut queue, _) = open(dir.path(), QueueLimits::default()).await;
        queue.push(&[record(2)], 0).await.expect("push");
        let next = queue.peek(0, 1).await.expect("peek");
        assert!(next[0].seq > seqs[1], "{} reuses a number", next[0].seq);
    }
}
