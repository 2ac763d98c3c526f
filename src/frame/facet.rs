//! What a frame carries besides its pixels, as a set: stages declare what they need from
//! the frames reaching them and what they add, and the pipeline check matches the two.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// One thing a stage may add to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facet {
    /// A label map (`Frame::labels`).
    Labels,
    /// Whole-frame class scores behind the labels (`Frame::scores`).
    Scores,
    /// Detected objects (`Frame::instances`).
    Instances,
    /// The frame with the segmentation drawn over it (`Frame::overlay`).
    Overlay,
    /// The true label map (`Frame::truth`).
    Truth,
}

impl Facet {
    pub const ALL: [Facet; 5] = [
        Facet::Labels,
        Facet::Scores,
        Facet::Instances,
        Facet::Overlay,
        Facet::Truth,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The facet in words, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Facet::Labels => "a label map",
            Facet::Scores => "class scores",
            Facet::Instances => "instances",
            Facet::Overlay => "an overlay",
            Facet::Truth => "ground truth",
        }
    }
}

/// A set of facets.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Facets(u8);

impl Facets {
    pub const NONE: Facets = Facets(0);

    pub fn contains(self, facet: Facet) -> bool {
        self.0 & facet.bit() != 0
    }

    /// Whether the two sets share a facet.
    pub fn intersects(self, other: Facets) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether every facet of `other` is in this set.
    pub fn covers(self, other: Facets) -> bool {
        self.0 & other.0 == other.0
    }

    /// The facets in both sets.
    pub fn and(self, other: Facets) -> Facets {
        Facets(self.0 & other.0)
    }

    pub fn without(self, other: Facets) -> Facets {
        Facets(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Facet> {
        Facet::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl From<Facet> for Facets {
    fn from(f: Facet) -> Facets {
        Facets(f.bit())
    }
}

impl BitOr for Facets {
    type Output = Facets;
    fn bitor(self, rhs: Facets) -> Facets {
        Facets(self.0 | rhs.0)
    }
}

impl BitOr<Facet> for Facets {
    type Output = Facets;
    fn bitor(self, rhs: Facet) -> Facets {
        self | Facets::from(rhs)
    }
}

impl BitOr for Facet {
    type Output = Facets;
    fn bitor(self, rhs: Facet) -> Facets {
        Facets::from(self) | rhs
    }
}

impl BitOrAssign for Facets {
    fn bitor_assign(&mut self, rhs: Facets) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Facets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_combine_and_compare() {
        let s = Facet::Labels | Facet::Scores;
        assert!(s.contains(Facet::Labels) && !s.contains(Facet::Instances));
        assert!(s.covers(Facet::Scores.into()));
        assert!(!s.covers(Facet::Scores | Facet::Truth));
        assert!(s.intersects(Facet::Scores | Facet::Truth));
        assert_eq!(s.without(Facet::Scores.into()), Facet::Labels.into());
        assert_eq!(s.iter().collect::<Vec<_>>(), [Facet::Labels, Facet::Scores]);
    }
}
