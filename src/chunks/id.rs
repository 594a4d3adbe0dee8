//! `ChunkId`: the BLAKE3-256 hash of a chunk's uncompressed bytes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The BLAKE3-256 of a chunk's uncompressed content. Serialized as 32 raw
/// bytes (a msgpack `bin`), never as an array of numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `data`.
    pub fn of(data: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// The ID as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(IdVisitor)
    }
}

/// Takes the 32 bytes where the decoder has them: no buffer per ID.
struct IdVisitor;

impl<'de> serde::de::Visitor<'de> for IdVisitor {
    type Value = ChunkId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("32 bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ChunkId, E> {
        let array: [u8; 32] = v
            .try_into()
            .map_err(|_| E::invalid_length(v.len(), &self))?;
        Ok(ChunkId(array))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ChunkId, A::Error> {
        let mut array = [0u8; 32];
        for (i, byte) in array.iter_mut().enumerate() {
            *byte = seq
                .next_element()?
                .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(serde::de::Error::invalid_length(33, &self));
        }
        Ok(ChunkId(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_32_raw_bytes() {
        let id = ChunkId::of(b"hello");
        let packed = rmp_serde::to_vec(&id).unwrap();
        // msgpack bin8: 0xc4, length 32, then the bytes.
        assert_eq!(packed.len(), 34);
        assert_eq!(&packed[..2], &[0xc4, 32]);
        let back: ChunkId = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn only_32_bytes_make_an_id() {
        for len in [0usize, 31, 33] {
            let packed = rmp_serde::to_vec(&serde_bytes::Bytes::new(&vec![7u8; len])).unwrap();
            let err = rmp_serde::from_slice::<ChunkId>(&packed).unwrap_err();
            assert!(err.to_string().contains("32 bytes"), "{err}");
        }
        // An array of 32 numbers (what a generic encoder may write) is
        // read too.
        let id = ChunkId::of(b"x");
        let packed = rmp_serde::to_vec(&id.0.to_vec()).unwrap();
        assert_eq!(rmp_serde::from_slice::<ChunkId>(&packed).unwrap(), id);
    }
}
