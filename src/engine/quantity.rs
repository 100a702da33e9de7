//! Canonical decimal text of a Kubernetes quantity: the one formatter that the engine's
//! explanations and `metric::Quantity` both use (R1.30–R1.32).

use std::fmt;

/// Writes `nanos` nano-units in canonical decimal form: the mantissa with its exponent
/// lowered to a multiple of three, then an SI suffix (`500m`, `12k`), or `e<exp>` when
/// `exponent_form` is asked for or no suffix exists (beyond `E`).
pub fn write_decimal(f: &mut dyn fmt::Write, nanos: i128, exponent_form: bool) -> fmt::Result {
    if nanos == 0 {
        return f.write_str("0");
    }
    let mut mantissa = nanos.abs();
    let mut exponent: i32 = -9;
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    // Lower the exponent to a multiple of three, toward −∞ (R1.30).
    let r = exponent.rem_euclid(3);
    mantissa *= 10i128.pow(r as u32);
    exponent -= r;
    let sign = if nanos < 0 { "-" } else { "" };
    match decimal_suffix(exponent) {
        _ if exponent_form && exponent == 0 => write!(f, "{sign}{mantissa}"),
        Some(suffix) if !exponent_form => write!(f, "{sign}{mantissa}{suffix}"),
        // No SI suffix above exa: exponent notation, as current apimachinery does (R1.32).
        _ => write!(f, "{sign}{mantissa}e{exponent}"),
    }
}

/// The SI suffix of a power of ten that is a multiple of three, from nano to exa.
pub fn decimal_suffix(exponent: i32) -> Option<&'static str> {
    Some(match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return None,
    })
}

/// Formats a milli-unit value as a canonical Kubernetes quantity (`212`, `1500m`, `12k`).
pub fn fmt_milli(milli: i64) -> impl fmt::Display {
    MilliDisplay(milli)
}

struct MilliDisplay(i64);

impl fmt::Display for MilliDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, i128::from(self.0) * 1_000_000, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(nanos: i128, exponent_form: bool) -> String {
        let mut s = String::new();
        write_decimal(&mut s, nanos, exponent_form).unwrap();
        s
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(fmt_milli(0).to_string(), "0");
        assert_eq!(fmt_milli(212_000).to_string(), "212");
        assert_eq!(fmt_milli(1_500).to_string(), "1500m");
        assert_eq!(fmt_milli(12_000_000).to_string(), "12k");
        assert_eq!(fmt_milli(-250).to_string(), "-250m");
        assert_eq!(fmt_milli(i64::MAX).to_string(), "9223372036854775807m");
        assert_eq!(text(5, false), "5n");
        assert_eq!(text(10_i128.pow(27), false), "1E");
        assert_eq!(text(10_i128.pow(30), false), "1e21");
        assert_eq!(text(3_000_000_000_000, true), "3e3");
        assert_eq!(text(7_000_000_000, true), "7");
    }
}
