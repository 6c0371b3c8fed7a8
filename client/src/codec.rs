//! Typed values (feature `serde`): values stored as JSON.
//!
//! JSON keeps values readable with telnet and by clients in other languages; the
//! flags are left alone (0), so nothing else has to agree on them.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// The value of `key` decoded from JSON, `None` on a miss.
    ///
    /// A value that is not valid JSON for `T` is [`Error::Codec`].
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct User { name: String }
    /// let user: Option<User> = client.get_json("user:42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>> {
        match self.get(key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Codec(e.to_string())),
            None => Ok(None),
        }
    }

    /// Stores `value` as JSON under `key` for `ttl`.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// #[derive(serde::Serialize)]
    /// struct User { name: String }
    /// client.set_json("user:42", &User { name: "Ada".into() }, Duration::from_secs(300)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_json<T: Serialize + ?Sized>(&self, key: impl AsRef<[u8]>, value: &T, ttl: Duration) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Codec(e.to_string()))?;
        self.set(key, bytes, ttl).await
    }
}
