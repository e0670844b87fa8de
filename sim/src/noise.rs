//! Seeded hashing and value noise. Everything that wobbles in the simulator is a pure function
//! of (seed, entity, time) built from these, so the numbers do not depend on the step size or on
//! the order in which things are evaluated.

/// SplitMix64's finaliser: a cheap, well-mixed 64-bit hash.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of three words (seed, stream, index).
#[inline]
pub fn hash3(a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(a) ^ b) ^ c)
}

/// Uniform in [0, 1).
#[inline]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [0, 1) for (seed, stream, index).
#[inline]
pub fn u01(seed: u64, stream: u64, i: u64) -> f64 {
    unit(hash3(seed, stream, i))
}

/// Roughly standard normal (Irwin–Hall of four uniforms, rescaled): bounded tails at ±3.5σ,
/// which keeps weather and noise plausible without rare absurd outliers.
#[inline]
pub fn gauss(seed: u64, stream: u64, i: u64) -> f64 {
    let h = hash3(seed, stream, i);
    let a = (h & 0xFFFF) as f64;
    let b = ((h >> 16) & 0xFFFF) as f64;
    let c = ((h >> 32) & 0xFFFF) as f64;
    let d = (h >> 48) as f64;
    ((a + b + c + d) / 65536.0 - 2.0) * 3.0f64.sqrt()
}

/// Smooth value noise: normal values at integer knots of `x`, joined by a smoothstep so the
/// curve (and its slope) is continuous. `x` may be negative.
#[inline]
pub fn value_noise(seed: u64, stream: u64, x: f64) -> f64 {
    let k = x.floor();
    let f = x - k;
    let i = k as i64 as u64;
    let s = f * f * (3.0 - 2.0 * f);
    let a = gauss(seed, stream, i);
    let b = gauss(seed, stream, i.wrapping_add(1));
    a + (b - a) * s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_is_centred_and_unit() {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| gauss(1, 2, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn value_noise_is_continuous() {
        let a = value_noise(3, 4, 5.0 - 1e-9);
        let b = value_noise(3, 4, 5.0 + 1e-9);
        assert!((a - b).abs() < 1e-6);
    }
}
