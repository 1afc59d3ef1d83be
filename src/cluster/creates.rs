//! The create ledger over Redis: what came of each `request_id`'s create, shared by the
//! replicas, so a retry gets the first answer whichever replica it reaches. One hash per
//! `request_id` (`<prefix>:create:<scoped key>`), kept a day, changed only by two scripts, so a
//! claim and its settling are atomic.

use std::{future::Future, pin::Pin, sync::LazyLock, time::Duration};

use super::Cluster;
use crate::gateway::{Claim, CreateLedger, Settled};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a `request_id`'s create is remembered (as long as WorkOS keeps its own keys).
const KEEP_MS: u64 = 24 * 60 * 60 * 1000;

/// Claims a record: KEYS[1] the record; ARGV fingerprint, holder, lease (ms), keep (ms).
/// Answers `{state}` (`fresh`, `in_doubt`, `busy`, `mismatch`) or `{"answered", answer}`. A
/// claim is `claimed` until its holder says it is `sending`; a claim whose holder is gone
/// (its lease passed) made nothing if it never got that far, and may have if it did.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'answer', 'holder', 'lease')
local function take(was, state)
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', state, 'holder', ARGV[2],
    'lease', ms + tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {was}
end
if not r[1] then return take('fresh', 'claimed') end
if r[2] == 'answered' then
  if r[1] ~= ARGV[1] then return {'mismatch'} end
  return {'answered', r[3]}
end
if r[4] and r[4] ~= '' and tonumber(r[5] or '0') > ms then return {'busy'} end
-- Nothing was made under it: a corrected request may take it.
if r[2] == 'fresh' or r[2] == 'claimed' then return take('fresh', 'claimed') end
if r[1] ~= ARGV[1] then return {'mismatch'} end
return take('in_doubt', 'in_doubt')
",
    )
});

/// Marks a claim as sending: KEYS[1] the record; ARGV holder. Only the holder may.
static SENDING: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'in_doubt')
return 1
",
    )
});

/// Settles a claim: KEYS[1] the record; ARGV holder, state, answer. Only the holder may. A
/// record of nothing made is deleted: absent means the same, and a flood of refused creates
/// leaves no keys behind.
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
if ARGV[2] == 'fresh' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'answer', ARGV[3], 'holder', '', 'lease', 0)
return 1
",
    )
});

impl Cluster {
    /// The ledger of creates the replicas share.
    pub fn ledger(&self) -> std::sync::Arc<dyn CreateLedger> {
        std::sync::Arc::new(self.clone())
    }
}

impl CreateLedger for Cluster {
    fn claim(
        &self,
        key: String,
        fingerprint: String,
        holder: String,
        lease: Duration,
    ) -> Boxed<'_, Claim> {
        Box::pin(async move {
            if !self.should_try() {
                return Claim::Unreachable;
            }
            let mut connection = self.inner.connection.clone();
            let answer: Option<Vec<String>> = self
                .bounded(
                    CLAIM
                        .key(self.key(&format!("create:{key}")))
                        .arg(fingerprint)
                        .arg(holder)
                        .arg(lease.as_millis().max(1) as u64)
                        .arg(KEEP_MS)
                        .invoke_async(&mut connection),
                )
                .await;
            self.note(answer.is_some());
            match answer.as_deref() {
                Some([state]) if state == "fresh" => Claim::Fresh,
                Some([state]) if state == "in_doubt" => Claim::InDoubt,
                Some([state]) if state == "busy" => Claim::Busy,
                Some([state]) if state == "mismatch" => Claim::Mismatch,
                Some([state, answer]) if state == "answered" => Claim::Answered(answer.clone()),
                _ => Claim::Unreachable,
            }
        })
    }

    fn sending(&self, key: String, holder: String) -> Boxed<'_, bool> {
        Box::pin(async move {
            let mut connection = self.inner.connection.clone();
            let marked: Option<i64> = self
                .bounded(
                    SENDING
                        .key(self.key(&format!("create:{key}")))
                        .arg(holder)
                        .invoke_async(&mut connection),
                )
                .await;
            self.note(marked.is_some());
            marked == Some(1)
        })
    }

    fn settle(&self, key: String, holder: String, settled: Settled) -> Boxed<'_, ()> {
        Box::pin(async move {
            let (state, answer) = match settled {
                Settled::Fresh => ("fresh", String::new()),
                Settled::InDoubt => ("in_doubt", String::new()),
                Settled::Answered(answer) => ("answered", answer),
            };
            let mut connection = self.inner.connection.clone();
            // Unsettled (Redis out of reach), the record stays in doubt with its lease: the
            // next call settles it by reading back.
            let settled: Option<i64> = self
                .bounded(
                    SETTLE
                        .key(self.key(&format!("create:{key}")))
                        .arg(holder)
                        .arg(state)
                        .arg(answer)
                        .invoke_async(&mut connection),
                )
                .await;
            self.note(settled.is_some());
        })
    }
}
