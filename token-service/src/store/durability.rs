//! How durable a write is once Redis has answered it, found out once at start-up.
//!
//! A rotated pair that Redis acknowledged and then lost in a crash kills the install (its refresh
//! token is spent at Snyk), and so does a lost "sending" mark (a successor could present a token
//! that is already at Snyk). So after those two writes token-service waits for durability:
//! - `WAITAOF 1 0` where the server has it (Redis >= 7.2, Valkey) and the AOF is on;
//! - otherwise it relies on `appendonly yes` + `appendfsync always` (Redis fsyncs before it
//!   answers), which it checks with `INFO persistence` and `CONFIG GET appendfsync`;
//! - and `WAIT n` when `TOKEN_REDIS_MIN_REPLICAS` is n >= 1.
//!
//! When none of that holds it says so once, at start-up, as a warning naming the risk, and through
//! the `snykapps.redis.durable_commits` gauge (0).

use std::time::Duration;

use redis::aio::ConnectionLike;

use super::error::StoreError;

/// What a write acknowledged by Redis is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `WAITAOF 1 <replicas>` after each durable write: fsynced on the primary before we go on.
    WaitAof,
    /// `appendonly yes` + `appendfsync always`: Redis fsyncs before it answers a write.
    FsyncAlways,
    /// Neither could be established; the reason says why. A crash of the Redis host can lose
    /// the last writes (about a second with `appendfsync everysec`).
    NotDurable(String),
}

/// The durability of this process's Redis, and how to wait for it.
#[derive(Debug, Clone)]
pub struct Durability {
    pub mode: Mode,
    /// `TOKEN_REDIS_MIN_REPLICAS`: replicas that must have a durable write (`WAIT`/`WAITAOF`).
    pub min_replicas: u32,
    timeout: Duration,
}

impl Durability {
    /// Asks the server. Never fails start-up: what cannot be established is reported.
    pub async fn probe(
        conn: &mut (impl ConnectionLike + Send),
        cluster: bool,
        min_replicas: u32,
        timeout: Duration,
    ) -> Durability {
        let mode = if cluster {
            Mode::NotDurable(
                "not checked in cluster mode: run every node with appendonly yes and appendfsync always"
                    .into(),
            )
        } else {
            probe_single(conn).await
        };
        let d = Durability {
            mode,
            min_replicas,
            timeout,
        };
        match &d.mode {
            Mode::NotDurable(reason) => tracing::warn!(
                reason = %reason,
                "Redis does not make a refresh durable before it is acknowledged: a crash of the Redis host can lose a rotated token pair, and with it the install (its old refresh token is already spent). Use appendonly yes with appendfsync always, or Redis >= 7.2 (WAITAOF)"
            ),
            mode => tracing::info!(mode = ?mode, min_replicas, "durable Redis writes"),
        }
        d
    }

    /// A write acknowledged by Redis survives a crash of the Redis host.
    pub fn is_durable(&self) -> bool {
        !matches!(self.mode, Mode::NotDurable(_))
    }

    /// Waits until the writes made so far on `conn` are durable (and on `min_replicas`
    /// replicas). A no-op with `appendfsync always` and no replicas required.
    pub async fn wait(&self, conn: &mut (impl ConnectionLike + Send)) -> Result<(), StoreError> {
        let timeout_ms = self.timeout.as_millis() as u64;
        if self.mode == Mode::WaitAof {
            let (local, replicas): (u32, u32) = redis::cmd("WAITAOF")
                .arg(1)
                .arg(self.min_replicas)
                .arg(timeout_ms)
                .query_async(conn)
                .await?;
            if local < 1 || replicas < self.min_replicas {
                return Err(StoreError::NotDurable(format!(
                    "WAITAOF: fsynced locally {local}, on {replicas} of {} replicas",
                    self.min_replicas
                )));
            }
        } else if self.min_replicas > 0 {
            let replicas: u32 = redis::cmd("WAIT")
                .arg(self.min_replicas)
                .arg(timeout_ms)
                .query_async(conn)
                .await?;
            if replicas < self.min_replicas {
                return Err(StoreError::NotDurable(format!(
                    "WAIT: acknowledged by {replicas} of {} replicas",
                    self.min_replicas
                )));
            }
        }
        Ok(())
    }
}

async fn probe_single(conn: &mut (impl ConnectionLike + Send)) -> Mode {
    let info: String = match redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await
    {
        Ok(info) => info,
        Err(e) => return Mode::NotDurable(format!("INFO persistence failed: {e}")),
    };
    if info_field(&info, "aof_enabled") != Some("1") {
        return Mode::NotDurable("appendonly is off".into());
    }
    // A server without WAITAOF (Redis < 7.2) answers "unknown command".
    let waitaof: redis::RedisResult<(u32, u32)> = redis::cmd("WAITAOF")
        .arg(1)
        .arg(0)
        .arg(1)
        .query_async(conn)
        .await;
    if waitaof.is_ok() {
        return Mode::WaitAof;
    }
    match redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async::<Vec<String>>(conn)
        .await
    {
        Ok(pair) if pair.get(1).map(String::as_str) == Some("always") => Mode::FsyncAlways,
        Ok(pair) => Mode::NotDurable(format!(
            "appendfsync is {} (not always) and the server has no WAITAOF",
            pair.get(1).map_or("unknown", String::as_str)
        )),
        Err(e) => Mode::NotDurable(format!(
            "the server has no WAITAOF and CONFIG GET appendfsync was refused ({e})"
        )),
    }
}

/// `name:value` from an INFO section.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_exactly() {
        let info = "# Persistence\r\naof_enabled:1\r\naof_enabled_x:0\r\n";
        assert_eq!(info_field(info, "aof_enabled"), Some("1"));
        assert_eq!(info_field(info, "aof"), None);
    }
}
