//! The farewell: a custom foca broadcast a node sends as it leaves on purpose
//! (SIGTERM, scale-down), so that every member learns the cluster *shrank* rather
//! than lost a member it must still count (see the server's `quorum`).
//!
//! foca's own goodbye (the leaver gossiping itself as down) reads exactly like a
//! failure once a third member relays it; the farewell travels next to it through
//! foca's custom-broadcast channel, which every member disseminates on. One
//! farewell is the leaver's node name and incarnation, bincode's standard
//! configuration of `(String, u64)`, at most [`MAX_FAREWELL`] bytes.

use super::{CodecError, MAX_PACKET};

/// Largest farewell accepted (a node name is far shorter).
pub const MAX_FAREWELL: usize = 512;

/// "The node `name`, run `incarnation`, has left the cluster on purpose."
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Farewell {
    /// The leaving node's name.
    pub name: String,
    /// Which run of the node is leaving (its foca incarnation), so a restarted node is not taken for gone.
    pub incarnation: u64,
}

impl Farewell {
    /// The bytes handed to foca's `add_broadcast`.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(bincode::serde::encode_to_vec(self, config())?)
    }

    /// Decodes one farewell; the bytes must be exactly one.
    pub fn decode(data: &[u8]) -> Result<Farewell, CodecError> {
        let (f, used): (Farewell, usize) = bincode::serde::decode_from_slice(data, config())?;
        if used != data.len() {
            return Err(CodecError::Decode(bincode::error::DecodeError::OtherString(format!(
                "{} bytes after a farewell",
                data.len() - used
            ))));
        }
        Ok(f)
    }
}

fn config() -> impl bincode::config::Config {
    const _: () = assert!(MAX_FAREWELL < MAX_PACKET);
    bincode::config::standard().with_limit::<MAX_FAREWELL>()
}

impl foca::Invalidates for Farewell {
    /// A farewell only replaces the same one (each leave is news of its own).
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let f = Farewell {
            name: "n1".into(),
            incarnation: 300,
        };
        let bytes = f.encode().unwrap();
        // varint length 2, "n1", varint 300 (0xfb then u16 LE).
        assert_eq!(bytes, [2, b'n', b'1', 0xfb, 0x2c, 0x01]);
        assert_eq!(Farewell::decode(&bytes).unwrap(), f);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Farewell::decode(&[]).is_err());
        assert!(Farewell::decode(&[2, b'n']).is_err());
        let mut long = Farewell {
            name: "n1".into(),
            incarnation: 1,
        }
        .encode()
        .unwrap();
        long.push(0);
        assert!(Farewell::decode(&long).is_err());
        // A length far beyond the limit is refused without allocating it.
        assert!(Farewell::decode(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
