//! `Kind`: layer, image or container. It imports nothing of the crate, so
//! that errors (`crate::error`) can carry it.

use std::fmt;

use serde::Serialize;

/// The three kinds of item, in lookup order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A layer.
    Layer,
    /// An image.
    Image,
    /// A container.
    Container,
}

impl Kind {
    /// `layer`, `image` or `container`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Layer => "layer",
            Kind::Image => "image",
            Kind::Container => "container",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
