//! A seeded noise generator shared by the calm scale-down's bench and property tests.

/// A deterministic generator (SplitMix64), so a failing case replays from its seed.
pub struct Noise(pub u64);

impl Noise {
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A zero-mean relative error within ±`amplitude`, of one of several shapes.
    #[allow(dead_code)] // the bench draws uniform noise from `unit` only
    pub fn sample(&mut self, shape: Shape, amplitude: f64) -> f64 {
        match shape {
            Shape::Uniform => amplitude * (2.0 * self.unit() - 1.0),
            // The sum of two uniforms: most readings near the mean.
            Shape::Triangular => amplitude * (self.unit() + self.unit() - 1.0),
            // Mostly far from the mean, on either side: the hardest for a mean to settle.
            Shape::Bimodal => {
                let sign = if self.unit() < 0.5 { -1.0 } else { 1.0 };
                sign * amplitude * (0.6 + 0.4 * self.unit())
            }
        }
    }
}

/// The distribution of a relative error.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // the bench draws uniform noise from `unit` only
pub enum Shape {
    /// Flat within ±amplitude.
    Uniform,
    /// Peaked at zero.
    Triangular,
    /// Two humps, away from zero on either side.
    Bimodal,
}
