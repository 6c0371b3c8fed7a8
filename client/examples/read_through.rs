//! Read-through caching in front of a real database (SQLite), with a running
//! ringcache cluster as the cache.
//!
//! ```text
//! scripts/cluster.sh start 3            # or: target/debug/ringcache -p 11211
//! cargo run -p ringcache-client --example read_through -- 127.0.0.1:11211
//! ```
//!
//! Seeds come from the arguments, else `RINGCACHE_SEEDS` (comma separated), else
//! `127.0.0.1:11211`. The example creates a `users` table, reads users through the
//! cache (cold, then warm), collapses 100 concurrent reads of one cold user into one
//! query, and updates a user: the cache entry is invalidated and served stale while
//! one reader reloads it. After each step it prints hits, misses and origin loads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use ringcache_client::{BoxError, Client, ClientStats, Origin};
use rusqlite::Connection;

/// The `users` table as an origin: `<prefix>user:<id>` → `id,name,email`.
struct Users {
    db: Arc<Mutex<Connection>>,
    prefix: String,
    /// Queries run against the database.
    queries: AtomicU64,
}

impl Users {
    fn id_of(&self, key: &[u8]) -> Option<i64> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.prefix)?
            .strip_prefix("user:")?
            .parse()
            .ok()
    }

    /// Runs `f` on the connection off the async threads (SQLite blocks).
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let db = Arc::clone(&self.db);
        let r = tokio::task::spawn_blocking(move || {
            let conn = db.lock().map_err(|_| "database lock poisoned")?;
            f(&conn).map_err(BoxError::from)
        })
        .await?;
        r
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Bytes)> {
    let (id, name, email): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    Ok((id, Bytes::from(format!("{id},{name},{email}"))))
}

impl Origin for Users {
    async fn load(&self, key: &[u8]) -> Result<Option<Bytes>, BoxError> {
        let Some(id) = self.id_of(key) else { return Ok(None) };
        self.with_db(move |db| {
            let mut stmt = db.prepare_cached("SELECT id, name, email FROM users WHERE id = ?1")?;
            let mut rows = stmt.query_map([id], row)?;
            rows.next().transpose().map(|r| r.map(|(_, v)| v))
        })
        .await
    }

    /// One `IN (...)` query for a batch.
    async fn load_many(&self, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, BoxError> {
        let ids: Vec<Option<i64>> = keys.iter().map(|k| self.id_of(k)).collect();
        let wanted: Vec<i64> = ids.iter().flatten().copied().collect();
        let found = self
            .with_db(move |db| {
                let marks = vec!["?"; wanted.len()].join(",");
                let sql = format!("SELECT id, name, email FROM users WHERE id IN ({marks})");
                let mut stmt = db.prepare(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(wanted.iter()), row)?;
                rows.collect::<rusqlite::Result<std::collections::HashMap<i64, Bytes>>>()
            })
            .await?;
        Ok(ids.iter().map(|id| id.and_then(|id| found.get(&id).cloned())).collect())
    }
}

fn report(step: &str, before: ClientStats, after: ClientStats, queries: u64, took: Duration) {
    println!(
        "{step:<44} hits {:>4}  misses {:>4}  shared {:>4}  origin loads {:>4}  (db queries so far {queries}, {took:.1?})",
        after.hits - before.hits,
        after.misses - before.misses,
        after.coalesced - before.coalesced,
        after.origin_loads - before.origin_loads,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut seeds: Vec<String> = std::env::args().skip(1).collect();
    if seeds.is_empty() {
        seeds = std::env::var("RINGCACHE_SEEDS")
            .unwrap_or_else(|_| "127.0.0.1:11211".into())
            .split(',')
            .map(str::to_string)
            .collect();
    }
    let client = Client::builder()
        .seeds(&seeds)
        .build()
        .await
        .with_context(|| format!("no ringcache node answered at {seeds:?}; start one first"))?;
    println!(
        "cluster: {}",
        client
            .nodes()
            .iter()
            .map(|n| format!("{} ({})", n.name, n.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The database: 1000 users.
    let db = Connection::open_in_memory()?;
    db.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)")?;
    {
        let mut insert = db.prepare("INSERT INTO users (id, name, email) VALUES (?1, ?2, ?3)")?;
        for id in 1..=1000i64 {
            insert.execute(rusqlite::params![
                id,
                format!("user {id}"),
                format!("u{id}@example.com")
            ])?;
        }
    }
    // Keys unique to this run, so every run starts cold.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let prefix = format!("demo:{run}:");
    let users = client.read_through(Users {
        db: Arc::new(Mutex::new(db)),
        prefix: prefix.clone(),
        queries: AtomicU64::new(0),
    });
    let users = users.allow_stale(true);
    let ttl = Duration::from_secs(600);
    let key = |id: i64| format!("{prefix}user:{id}");
    let queries = |u: &ringcache_client::ReadThrough<Users>| u.origin().queries.load(Ordering::Relaxed);

    // 1. Cold: every user is a miss and a load.
    let (before, t) = (client.stats(), Instant::now());
    for id in 1..=200 {
        users.get_or_load(key(id), ttl).await?;
    }
    report(
        "200 users, one by one, cold",
        before,
        client.stats(),
        queries(&users),
        t.elapsed(),
    );

    // 2. Warm: every user is a hit.
    let (before, t) = (client.stats(), Instant::now());
    for id in 1..=200 {
        users.get_or_load(key(id), ttl).await?;
    }
    report(
        "the same 200 users again",
        before,
        client.stats(),
        queries(&users),
        t.elapsed(),
    );

    // 3. A batch, half cached: one get_many and one IN query for the rest.
    let (before, t) = (client.stats(), Instant::now());
    let batch: Vec<String> = (101..=300).map(key).collect();
    let got = users.get_many_or_load(&batch, ttl).await?;
    assert!(got.iter().all(Option::is_some));
    report(
        "users 101-300 as one batch",
        before,
        client.stats(),
        queries(&users),
        t.elapsed(),
    );

    // 4. 100 concurrent readers of one cold user: one query.
    let (before, t) = (client.stats(), Instant::now());
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let users = users.clone();
            let k = key(777);
            tokio::spawn(async move { users.get_or_load(k, ttl).await })
        })
        .collect();
    for r in readers {
        r.await??;
    }
    report(
        "100 concurrent readers of one cold user",
        before,
        client.stats(),
        queries(&users),
        t.elapsed(),
    );

    // 5. An update: write the database, invalidate the cache entry. Readers get the
    //    old row at once while one background load fetches the new one.
    users
        .origin()
        .with_db(|db| db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 7", []))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    client.invalidate(key(7)).await?;
    let stale = users.get_or_load(key(7), ttl).await?;
    println!(
        "after the update, served at once: {:?}",
        stale.map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = client.get(key(7)).await?;
        if let Some(v) = v.filter(|v| v.starts_with(b"7,Ada")) {
            println!("revalidated in the background: {:?}", String::from_utf8_lossy(&v));
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the refresh did not land");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let s = client.stats();
    println!(
        "totals: hits {} misses {} origin loads {} stale served {} write-backs {} (refused {}), db queries {}",
        s.hits,
        s.misses,
        s.origin_loads,
        s.stale_served,
        s.writebacks,
        s.writebacks_refused,
        queries(&users)
    );
    Ok(())
}
