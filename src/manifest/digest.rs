//! SHA-256 for layer digests, via ring's assembly implementation (about
//! twice the speed of the portable `sha2` crate on CPUs without SHA-NI).

use ring::digest::{Context, SHA256};

/// An incremental SHA-256 that also counts the bytes it saw.
pub struct Sha256 {
    ctx: Context,
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256 {
            ctx: Context::new(&SHA256),
            len: 0,
        }
    }
}

impl Sha256 {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest as `sha256:<hex>`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.ctx.finish().as_ref()))
    }

    /// `sha256:<hex>` of `data`.
    pub fn digest(data: &[u8]) -> String {
        let mut h = Sha256::default();
        h.update(data);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_answer() {
        assert_eq!(
            super::Sha256::digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
