//! Browsing a queue ([`Driver::list`](asynctasq_core::Driver::list)): a page of members from
//! the sorted set of the state asked for, each read with the pipelined lookup of `find.rs`.
//! Waiting tasks page by due time, leased ones by lease expiry, dead ones by when they died,
//! and kept ones by when they expire (their end, plus a time to live that is the same for a
//! worker's tasks), read in chunks and filtered by how they ended.

use asynctasq_core::DriverError;
use asynctasq_core::driver::{TaskRecord, TaskState};

use super::{QueueKeys, RedisDriver, map_err, member_id, now};

/// Members read per round trip when kept tasks are filtered by how they ended.
const CHUNK: usize = 500;

impl RedisDriver {
    pub(super) async fn list_tasks(
        &self,
        queue: &str,
        state: TaskState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, DriverError> {
        let k = self.keys(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let at = now();
        let parked = asynctasq_core::limits::PARKED;
        let (set, min, max) = match state {
            TaskState::Ready => (&k.waiting, "-inf".to_owned(), at.to_string()),
            TaskState::Scheduled => (&k.waiting, format!("({at}"), format!("({parked}")),
            TaskState::Leased => (&k.leased, format!("({at}"), "+inf".to_owned()),
            TaskState::Dead => (&k.dead, "-inf".to_owned(), "+inf".to_owned()),
            _ => return self.list_kept(queue, &k, state, offset, limit).await,
        };
        let mut members = self.range(set, &min, &max, offset, limit).await?;
        if state == TaskState::Ready && members.len() < limit {
            // Parked tasks (`asynctasq_core::limits`) are ready too: listed after the due ones.
            let due: usize = ::redis::cmd("ZCOUNT")
                .arg(&k.waiting)
                .arg("-inf")
                .arg(at)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| map_err("list tasks", e))?;
            let from = offset.saturating_sub(due);
            members.extend(self.range(&k.waiting, &parked.to_string(), "+inf", from, limit - members.len()).await?);
        }
        // Every member's reads at once: the multiplexed connection pipelines them, so a page
        // costs about one round trip, not one per task.
        let found = futures_util::future::try_join_all(members.iter().map(|m| self.find_live(member_id(m), queue, &k, m))).await?;
        Ok(found.into_iter().flatten().filter(|r| r.state == state).collect())
    }

    async fn list_kept(
        &self,
        queue: &str,
        k: &QueueKeys,
        state: TaskState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, DriverError> {
        let (mut skipped, mut out, mut from) = (0, Vec::new(), 0);
        let min = format!("({}", now());
        loop {
            let members = self.range(&k.done, &min, "+inf", from, CHUNK).await?;
            from += members.len();
            for member in &members {
                let Some(record) = self.find_kept(member_id(member), queue, k, member).await? else { continue };
                if record.state != state {
                    continue;
                }
                if skipped < offset {
                    skipped += 1;
                } else {
                    out.push(record);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            if members.len() < CHUNK {
                return Ok(out);
            }
        }
    }

    /// Up to `limit` members of `set` scored from `min` to `max`, after skipping `offset`.
    async fn range(&self, set: &str, min: &str, max: &str, offset: usize, limit: usize) -> Result<Vec<String>, DriverError> {
        ::redis::cmd("ZRANGEBYSCORE")
            .arg(set)
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(offset)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| map_err("list tasks", e))
    }

    /// A page of `queue`'s dead tasks after the cursor `after` (`SCORE:MEMBER`: the last
    /// page's last member and its score, when it died), oldest first. The dead set orders by
    /// score, then by member among equal scores (Redis's own order), so a page starts at the
    /// cursor's score and skips what is not past it: one range read, however deep the page.
    pub(super) async fn dead_page(&self, queue: &str, after: Option<&str>, limit: usize) -> Result<asynctasq_core::DeadPage, DriverError> {
        let k = self.keys(queue)?;
        let cursor = match after {
            None => None,
            Some(a) => Some(
                a.split_once(':')
                    .and_then(|(s, m)| Some((s.parse::<f64>().ok()?, m.to_owned())))
                    .ok_or_else(|| DriverError::Config(format!("not a dead-letter cursor: `{}`", asynctasq_core::envelope::excerpt(a))))?,
            ),
        };
        if limit == 0 {
            return Ok(asynctasq_core::DeadPage::default());
        }
        let min = cursor.as_ref().map_or_else(|| "-inf".to_owned(), |(score, _)| score.to_string());
        let (mut page, mut offset) = (Vec::<(String, f64)>::new(), 0);
        while page.len() < limit {
            let want = limit - page.len() + 16;
            let got: Vec<(String, f64)> = ::redis::cmd("ZRANGEBYSCORE")
                .arg(&k.dead)
                .arg(&min)
                .arg("+inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(want)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| map_err("list dead tasks", e))?;
            offset += got.len();
            let short = got.len() < want;
            page.extend(got.into_iter().filter(|(member, score)| {
                cursor.as_ref().is_none_or(|(s, m)| *score > *s || (*score == *s && member.as_str() > m.as_str()))
            }));
            if short {
                break;
            }
        }
        page.truncate(limit);
        let next = (page.len() == limit).then(|| page.last().map(|(m, s)| format!("{s}:{m}"))).flatten();
        let found = futures_util::future::try_join_all(page.iter().map(|(m, _)| self.find_live(member_id(m), queue, &k, m))).await?;
        let tasks = found
            .into_iter()
            .zip(&page)
            .filter_map(|(r, (m, s))| r.filter(|r| r.state == TaskState::Dead).map(|r| (r, format!("{s}:{m}"))))
            .collect();
        Ok(asynctasq_core::DeadPage::new(tasks, next))
    }
}
