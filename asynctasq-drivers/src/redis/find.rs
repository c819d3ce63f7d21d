//! Looking a task up by id. A task's keys live in its queue's slot, and nothing maps an id to
//! its queue (such an index would be one more key outside every slot, written by every
//! enqueue), so a lookup asks every known queue's envelope hash and kept tasks in one pipelined
//! round trip, then reads the one queue that holds the id in a second: O(queues), for operators
//! and waiters, never on the hot path.

use ::redis::Value;
use asynctasq_core::DriverError;
use asynctasq_core::driver::{TaskRecord, TaskState};
use asynctasq_core::envelope::{TaskId, validate_queue_name};

use super::{QueueKeys, RedisDriver, bytes, decode, int, map_err, now};

impl RedisDriver {
    /// The queue holding `id` (live, dead, or kept and not expired), if any.
    pub(super) async fn queue_of(&self, id: TaskId) -> Result<Option<String>, DriverError> {
        Ok(self.locate(id).await?.map(|(queue, _)| queue))
    }

    /// The queue holding `id`, and whether it holds it as a kept (settled) task.
    async fn locate(&self, id: TaskId) -> Result<Option<(String, bool)>, DriverError> {
        let mut queues: Vec<String> =
            ::redis::cmd("SMEMBERS").arg(self.queues_key()).query_async(&mut self.conn()).await.map_err(|e| map_err("find", e))?;
        queues.retain(|q| validate_queue_name(q).is_ok());
        if queues.is_empty() {
            return Ok(None);
        }
        let member = id.to_string();
        let mut pipe = ::redis::pipe();
        for q in &queues {
            let k = self.keys(q)?;
            pipe.cmd("HEXISTS").arg(k.env).arg(&member);
            pipe.cmd("ZSCORE").arg(k.done).arg(&member);
        }
        let held: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(|e| map_err("find", e))?;
        let at = now();
        let mut found = None;
        for (q, pair) in queues.iter().zip(held.chunks(2)) {
            if int(&pair[0]) == Some(1) {
                found = Some((q.clone(), false));
                break;
            }
            if score(&pair[1]).is_some_and(|expires_at| expires_at > at) {
                found = Some((q.clone(), true));
            }
        }
        Ok(found)
    }

    pub(super) async fn find_task(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        let Some((queue, kept)) = self.locate(id).await? else { return Ok(None) };
        let (queue, member) = (queue.as_str(), id.to_string());
        let k = self.keys(queue)?;
        if kept {
            return self.find_kept(id, queue, &k, &member).await;
        }
        self.find_live(id, queue, &k, &member).await
    }

    /// The record of a task `queue` holds live or dead (or, settled since, kept).
    pub(super) async fn find_live(&self, id: TaskId, queue: &str, k: &QueueKeys, member: &str) -> Result<Option<TaskRecord>, DriverError> {
        let member = member.to_owned();
        let mut pipe = ::redis::pipe();
        pipe.cmd("HGET").arg(&k.env).arg(&member);
        pipe.cmd("HGET").arg(&k.attempt).arg(&member);
        pipe.cmd("HGET").arg(&k.error).arg(&member);
        pipe.cmd("ZSCORE").arg(&k.waiting).arg(&member);
        pipe.cmd("ZSCORE").arg(&k.leased).arg(&member);
        pipe.cmd("ZSCORE").arg(&k.dead).arg(&member);
        pipe.cmd("HEXISTS").arg(&k.cancel).arg(&member);
        pipe.cmd("HGET").arg(&k.progress).arg(&member);
        pipe.cmd("HGET").arg(&k.errors).arg(&member);
        pipe.cmd("ZSCORE").arg(&k.dead_expiry).arg(&member);
        pipe.cmd("HGET").arg(&k.token).arg(&member);
        let reply: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(|e| map_err("find", e))?;
        let [env, attempt, error, waiting, leased, dead, cancel, progress, history, dead_expiry, token] = &reply[..] else {
            return Err(DriverError::Backend { message: "find: unexpected reply from Redis".into(), source: None });
        };
        let Value::BulkString(raw) = env else {
            // Settled between the two reads: acked (and perhaps kept) or purged.
            return self.find_kept(id, queue, k, &member).await;
        };
        let attempt = int(attempt).unwrap_or_default() as u32;
        let error = bytes(error).map(|b| String::from_utf8_lossy(b).into_owned());
        let (state, at) = if let Some(at) = score(dead) {
            // A dead task whose time to live has passed is gone, swept or not.
            if score(dead_expiry).is_some_and(|expires_at| expires_at <= now()) {
                return Ok(None);
            }
            (TaskState::Dead, at)
        } else if let Some(at) = score(leased) {
            (TaskState::of_live(true, at, now()), at)
        } else if let Some(at) = score(waiting) {
            // A parked task's score is offset (see `asynctasq_core::limits`).
            (TaskState::of_live(false, at, now()), asynctasq_core::limits::unparked(at))
        } else {
            // The scripts never leave an envelope outside the queue's sets; should one be, it
            // is reported rather than hidden.
            (TaskState::Ready, now())
        };
        let record = TaskRecord::new(id, queue, state, attempt, at, error, decode(id, Some(raw)));
        let history = bytes(history).map(|b| String::from_utf8_lossy(b).into_owned());
        // The claim's token: random, `.` when the run started, `@` the consumer.
        let token = bytes(token).map(|t| String::from_utf8_lossy(t).into_owned()).unwrap_or_default();
        let (token, holder) = token.split_once('@').map_or((token.as_str(), None), |(t, h)| (t, Some(h.to_owned())));
        let started = token.split_once('.').and_then(|(_, at)| at.parse().ok());
        let record = record.cancel_requested(int(cancel) == Some(1)).with_progress(bytes(progress)).with_errors(history.as_deref());
        Ok(Some(record.with_holder(holder).with_started(started)))
    }

    /// The record of a task kept in `queue` (succeeded or cancelled), unless its time to live
    /// has passed.
    pub(super) async fn find_kept(&self, id: TaskId, queue: &str, k: &QueueKeys, member: &str) -> Result<Option<TaskRecord>, DriverError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZSCORE").arg(&k.done).arg(member);
        pipe.cmd("HGET").arg(&k.done_env).arg(member);
        pipe.cmd("HGET").arg(&k.done_at).arg(member);
        pipe.cmd("HGET").arg(&k.done_result).arg(member);
        let reply: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(|e| map_err("find", e))?;
        let [expires_at, env, at, result] = &reply[..] else {
            return Err(DriverError::Backend { message: "find: unexpected reply from Redis".into(), source: None });
        };
        if score(expires_at).is_none_or(|expires_at| expires_at <= now()) {
            return Ok(None); // never kept, or past its time to live
        }
        let Value::BulkString(raw) = env else { return Ok(None) }; // swept in between
        let at = bytes(at).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        // `finished_at:attempt`, then `:cancelled` for a cancelled one and `:s<started_at>`.
        let mut parts = at.split(':');
        let finished_at = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let attempt = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let (mut cancelled, mut started) = (false, None);
        for part in parts {
            match part.strip_prefix('s') {
                Some(at) => started = at.parse().ok(),
                None => cancelled |= part == "cancelled",
            }
        }
        let record = if cancelled {
            TaskRecord::new(id, queue, TaskState::Cancelled, attempt, finished_at, None, decode(id, Some(raw)))
        } else {
            TaskRecord::succeeded(id, queue, attempt, finished_at, bytes(result).map(<[u8]>::to_vec), decode(id, Some(raw)))
        };
        Ok(Some(record.with_started(started)))
    }
}

/// A sorted set's score as whole milliseconds.
pub(super) fn score(v: &Value) -> Option<u64> {
    match v {
        Value::Double(d) => Some(*d as u64),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse::<f64>().ok().map(|f| f as u64),
    }
}
