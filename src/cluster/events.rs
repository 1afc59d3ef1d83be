//! One setup events poller for the whole cluster: the replica holding a lease (a Redis key with a
//! TTL, renewed while it lives) polls WorkOS and appends each page to a Redis Stream together with
//! the cursor, in one script that checks the lease first, so a replica that lost its lease (it
//! stalled, or another took over) can never append. Every replica reads the stream and fans the
//! events out to its own watchers. When the leader dies, the lease expires and another replica
//! takes over from the cursor in Redis: no event is lost, and none is appended twice.

use std::{future::Future, pin::Pin, time::Duration};

use super::Cluster;
use crate::gateway::EventBus;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Takes the lease when free, renews it when held; returns whether this replica holds it.
const LEAD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('INCR', KEYS[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Appends a page (ARGV[3..]) and sets the cursor (ARGV[2]), only while ARGV[1] holds the lease.
const APPEND: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
for i = 4, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[i])
end
redis.call('SET', KEYS[3], ARGV[2])
return 1
";

impl Cluster {
    fn lease_ttl_ms(&self) -> u64 {
        self.inner.settings.lease_ttl.as_millis() as u64
    }
}

impl EventBus for Cluster {
    fn lead(&self) -> Boxed<'_, bool> {
        Box::pin(async move {
            let mut connection = self.inner.connection.clone();
            let held: Result<i64, _> = redis::Script::new(LEAD)
                .key(self.key("poller:lease"))
                .key(self.key("poller:epoch"))
                .arg(&self.inner.replica_id)
                .arg(self.lease_ttl_ms())
                .invoke_async(&mut connection)
                .await;
            matches!(held, Ok(1))
        })
    }

    fn lease_ttl(&self) -> Duration {
        self.inner.settings.lease_ttl
    }

    fn cursor(&self) -> Boxed<'_, Result<Option<String>, ()>> {
        Box::pin(async move {
            let mut connection = self.inner.connection.clone();
            redis::cmd("GET")
                .arg(self.key("poller:cursor"))
                .query_async::<Option<String>>(&mut connection)
                .await
                .map_err(drop)
        })
    }

    fn append(
        &self,
        events: Vec<String>,
        cursor: String,
        keep: usize,
    ) -> Boxed<'_, Result<bool, ()>> {
        Box::pin(async move {
            let mut connection = self.inner.connection.clone();
            let script = redis::Script::new(APPEND);
            let mut invocation = script.key(self.key("poller:lease"));
            invocation
                .key(self.key("setup:events"))
                .key(self.key("poller:cursor"))
                .arg(&self.inner.replica_id)
                .arg(cursor)
                .arg(keep);
            for event in events {
                invocation.arg(event);
            }
            let appended: Result<i64, _> = invocation.invoke_async(&mut connection).await;
            appended.map(|n| n == 1).map_err(drop)
        })
    }

    fn read(
        &self,
        after: Option<String>,
        backlog: usize,
        wait: Duration,
    ) -> Boxed<'_, Result<Vec<(String, String)>, ()>> {
        Box::pin(async move {
            let stream = self.key("setup:events");
            // Stream reads run on a connection of their own with a timeout to match (a
            // blocking read must not hold the shared connection, and the backlog of thousands
            // of entries takes longer than a quota check may).
            let mut reader = self.inner.reader.lock().await;
            if reader.is_none() {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.inner.settings.connect_timeout))
                    .set_response_timeout(Some(wait + Duration::from_secs(5)));
                *reader = Some(
                    self.inner
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(drop)?,
                );
            }
            let Some(connection) = reader.as_mut() else {
                return Err(());
            };
            let query = match &after {
                // The newest `backlog` entries (returned newest first).
                None => redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(backlog.max(1))
                    .to_owned(),
                Some(after) => redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(wait.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(after)
                    .to_owned(),
            };
            let entries: redis::Value = match query.query_async(connection).await {
                Ok(value) => value,
                Err(_) => {
                    *reader = None;
                    return Err(());
                }
            };
            if after.is_none() {
                let mut list = entries_of(&entries);
                list.reverse();
                return Ok(list);
            }
            // XREAD answers [[stream, [entries]]], or nil when nothing came.
            let mut out = Vec::new();
            if let redis::Value::Array(streams) = &entries {
                for stream in streams {
                    if let redis::Value::Array(pair) = stream
                        && let Some(list) = pair.get(1)
                    {
                        out.extend(entries_of(list));
                    }
                }
            }
            Ok(out)
        })
    }
}

/// `(id, event)` of each stream entry in a reply.
fn entries_of(value: &redis::Value) -> Vec<(String, String)> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut out = Vec::new();
    if let redis::Value::Array(entries) = value {
        for entry in entries {
            let redis::Value::Array(parts) = entry else {
                continue;
            };
            let (Some(id), Some(redis::Value::Array(fields))) = (parts.first(), parts.get(1))
            else {
                continue;
            };
            let (Some(id), Some(event)) = (text(id), fields.get(1).and_then(text)) else {
                continue;
            };
            out.push((id, event));
        }
    }
    out
}
