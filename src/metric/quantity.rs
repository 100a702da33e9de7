//! Kubernetes quantities (`500m`, `1536Ki`, `1e3`): parsing and canonical formatting.
//!
//! The grammar and the canonical forms follow `apimachinery`'s `resource.Quantity`
//! (spec/k8s-contracts.md R1.28–R1.35). A value is held exactly as a whole number of
//! nano-units, which is the finest scale Kubernetes keeps (R1.31).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::quantity::write_decimal;

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The largest magnitude accepted, in nano-units (10^27 units): far above any metric or
/// resource value, and small enough that all arithmetic stays exact in `i128`.
const MAX_NANOS: i128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;

/// How a quantity prints itself: the format of the suffix it was written with (Go keeps this too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Decimal SI suffixes: `n u m k M G T P E`.
    #[default]
    DecimalSi,
    /// Binary SI suffixes: `Ki Mi Gi Ti Pi Ei`.
    BinarySi,
    /// A decimal exponent: `1e3`, `5e-3`.
    DecimalExponent,
}

/// A Kubernetes quantity: an exact decimal value with the format it prints in.
///
/// Equality, ordering and hashing look at the value only (`1k == 1000 == 1e3`), as Go's `Cmp` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {why} (expected e.g. 250m, 1.5, 400Mi, 1e3)")]
pub struct QuantityError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub why: &'static str,
}

impl Quantity {
    /// Zero, printed `0`.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: QuantityFormat::DecimalSi,
    };

    /// A quantity of `milli` thousandths, printed in decimal SI.
    pub fn from_milli(milli: i64) -> Self {
        Self {
            nanos: i128::from(milli) * 1_000_000,
            format: QuantityFormat::DecimalSi,
        }
    }

    /// A whole number of units, printed in the given format.
    pub fn from_units(units: i64, format: QuantityFormat) -> Self {
        Self {
            nanos: i128::from(units) * NANOS_PER_UNIT,
            format,
        }
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The format this quantity prints in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The same value printed in another format.
    pub fn with_format(self, format: QuantityFormat) -> Self {
        Self { format, ..self }
    }

    /// The value in thousandths, rounded up away from zero, as the HPA reads every metric (R1.34):
    /// `1500u` → 2, `1n` → 1. Saturates at the `i64` range.
    pub fn milli_value(&self) -> i64 {
        let per_milli = 1_000_000;
        let q = self.nanos / per_milli;
        let rem = self.nanos % per_milli;
        let rounded = if rem > 0 {
            q + 1
        } else if rem < 0 {
            q - 1
        } else {
            q
        };
        rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The value as a float (approximate, for display and tolerances).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    fn canonical(&self) -> String {
        if self.format == QuantityFormat::BinarySi {
            let whole = self.nanos % NANOS_PER_UNIT == 0;
            if whole && self.nanos.abs() >= 1024 * NANOS_PER_UNIT {
                let mut units = (self.nanos / NANOS_PER_UNIT).abs();
                let mut power = 0;
                while units % 1024 == 0 && power < BINARY_SUFFIXES.len() - 1 {
                    units /= 1024;
                    power += 1;
                }
                let sign = if self.nanos < 0 { "-" } else { "" };
                return format!("{sign}{units}{}", BINARY_SUFFIXES[power]);
            }
            // Small or fractional values print in decimal SI so nothing is lost (R1.33).
        }
        let mut text = String::new();
        let exponent_form = self.format == QuantityFormat::DecimalExponent;
        // Writing to a String cannot fail.
        let _ = write_decimal(&mut text, self.nanos, exponent_form);
        text
    }
}

const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// What a suffix means: a power of ten, a power of two, and the format it implies.
fn interpret_suffix(suffix: &str) -> Option<(i32, u32, QuantityFormat)> {
    let dec = |e| Some((e, 0, QuantityFormat::DecimalSi));
    let bin = |p| Some((0, p, QuantityFormat::BinarySi));
    match suffix {
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "" => dec(0),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        _ => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))?;
            let digits = rest
                .strip_prefix('-')
                .or_else(|| rest.strip_prefix('+'))
                .unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = rest.parse().ok()?;
            Some((e, 0, QuantityFormat::DecimalExponent))
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| QuantityError {
            input: s.to_string(),
            why,
        };
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            Some(_) => (false, s),
            None => return Err(err("empty")),
        };
        let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = body.split_at(int_len);
        let (frac_part, suffix) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(n)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("expected a number"));
        }
        let (pow10, pow2, format) =
            interpret_suffix(suffix).ok_or_else(|| err("unknown suffix"))?;

        // Exact value = digits × 10^(pow10 − frac_len) × 2^pow2, held in nano-units.
        let mut digits: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            digits = digits
                .checked_mul(10)
                .and_then(|d| d.checked_add(i128::from(b - b'0')))
                .ok_or_else(|| err("too many digits"))?;
        }
        let too_large = || err("too large (the limit is 10^27)");
        digits = digits
            .checked_mul(1i128 << pow2.min(100))
            .ok_or_else(too_large)?;
        let scale = i64::from(pow10) - frac_part.len() as i64 + 9;
        let nanos = if digits == 0 {
            0
        } else if scale >= 0 {
            let factor = u32::try_from(scale)
                .ok()
                .and_then(|s| 10i128.checked_pow(s))
                .ok_or_else(too_large)?;
            digits.checked_mul(factor).ok_or_else(too_large)?
        } else {
            // Finer than a nano-unit: round up, away from zero (R1.31).
            match u32::try_from(-scale)
                .ok()
                .and_then(|s| 10i128.checked_pow(s))
            {
                Some(divisor) => (digits + divisor - 1) / divisor,
                None => 1,
            }
        };
        if nanos > MAX_NANOS {
            return Err(too_large());
        }
        Ok(Self {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity: a string such as \"250m\" or \"400Mi\", or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Ok(Quantity::from_units(v, QuantityFormat::DecimalSi))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        let nanos = i128::from(v) * NANOS_PER_UNIT;
        if nanos > MAX_NANOS {
            return Err(E::custom("quantity too large"));
        }
        Ok(Quantity {
            nanos,
            format: QuantityFormat::DecimalSi,
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::custom(format!(
                "invalid quantity {v}: not a finite number"
            )));
        }
        // Rust prints the shortest decimal that reads back as the same float, without an
        // exponent, so the number the user wrote (`0.95`) is what gets parsed.
        v.to_string().parse().map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Quantity, E> {
        // Go reads `null` as zero (R1.28).
        Ok(Quantity::ZERO)
    }

    fn visit_none<E: de::Error>(self) -> Result<Quantity, E> {
        Ok(Quantity::ZERO)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "A Kubernetes quantity such as 250m, 1.5, 400Mi or 1e3."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn canonical_table_of_section_1_5() {
        // (input, canonical) — DecimalSI unless the input carries a binary suffix.
        let cases = [
            ("0", "0"),
            ("0.5", "500m"),
            ("0.001", "1m"),
            ("0.01", "10m"),
            ("1", "1"),
            ("1.5", "1500m"),
            ("2.5", "2500m"),
            ("100", "100"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("12000", "12k"),
            ("1234567", "1234567"),
            ("123.456", "123456m"),
            ("1000000000", "1G"),
            ("0.0001", "100u"),
            ("0.00000025", "250n"),
            ("250000000n", "250m"),
            ("-0.5", "-500m"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
        let bin = |units: i64| Quantity::from_units(units, QuantityFormat::BinarySi).to_string();
        assert_eq!(bin(1_048_576), "1Mi");
        assert_eq!(bin(1_572_864), "1536Ki");
        assert_eq!(bin(500), "500");
        assert_eq!(bin(1500), "1500");
    }

    #[test]
    fn canonical_strings_round_trip_verbatim() {
        for s in [
            "250m", "1536Ki", "1Mi", "100u", "-500m", "1e3", "5e-3", "12k", "7", "1e21",
        ] {
            assert_eq!(q(s).to_string(), s);
        }
    }

    #[test]
    fn grammar_covers_every_suffix_and_sign() {
        assert_eq!(q("1k").nanos(), 1000 * NANOS_PER_UNIT);
        assert_eq!(q("1E").nanos(), 10i128.pow(27));
        assert_eq!(q("2Ki").nanos(), 2048 * NANOS_PER_UNIT);
        assert_eq!(q("1Gi").nanos(), (1i128 << 30) * NANOS_PER_UNIT);
        assert_eq!(q("1.5e3"), q("1500"));
        assert_eq!(q("1E3"), q("1k"));
        assert_eq!(q("+3"), q("3"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("5."), q("5"));
        assert_eq!(q("1.5Gi").to_string(), "1536Mi");
        assert_eq!(q("0.5Ki").to_string(), "512");
        assert_eq!(q("2e-3").format(), QuantityFormat::DecimalExponent);
    }

    #[test]
    fn finer_than_nano_rounds_up() {
        assert_eq!(q("0.9n").to_string(), "1n");
        assert_eq!(q("1.1n").to_string(), "2n");
        assert_eq!(q("-0.9n").to_string(), "-1n");
        assert_eq!(q("1e-30").to_string(), "1e-9");
        assert_eq!(q("0.0000000000001").to_string(), "1n");
    }

    #[test]
    fn milli_value_rounds_up() {
        assert_eq!(q("1500u").milli_value(), 2);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("251738129n").milli_value(), 252);
        assert_eq!(q("187212Ki").milli_value(), 191_705_088_000);
        assert_eq!(q("2").milli_value(), 2000);
        assert_eq!(q("0").milli_value(), 0);
        assert_eq!(q("1E").milli_value(), i64::MAX);
    }

    #[test]
    fn bad_input_is_named() {
        for bad in [
            "",
            "-",
            ".",
            "1x",
            "1 k",
            "k",
            "1e",
            "1e+",
            "1.2.3",
            "1Ki5",
            "--1",
            "1e99999999999",
        ] {
            let e = bad.parse::<Quantity>().unwrap_err();
            assert_eq!(e.input, bad);
        }
        assert!("1e40".parse::<Quantity>().is_err());
    }

    #[test]
    fn serde_accepts_strings_and_numbers_and_emits_strings() {
        let v: Vec<Quantity> = serde_json::from_str(r#"["300m", 950, 0.95, -2, null]"#).unwrap();
        assert_eq!(v[0].milli_value(), 300);
        assert_eq!(v[1].milli_value(), 950_000);
        assert_eq!(v[2].to_string(), "950m");
        assert_eq!(v[3].to_string(), "-2");
        assert!(v[4].is_zero());
        assert_eq!(serde_json::to_string(&v[0]).unwrap(), r#""300m""#);
        let y: Vec<Quantity> =
            serde_saphyr::from_str("- 400Mi\n- 100\n- \"250m\"\n- 0.1\n").unwrap();
        assert_eq!(y[0].to_string(), "400Mi");
        assert_eq!(y[1].to_string(), "100");
        assert_eq!(y[2].to_string(), "250m");
        assert_eq!(y[3].to_string(), "100m");
        assert!(serde_json::from_str::<Quantity>(r#""12 apples""#).is_err());
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("999m") < q("1"));
    }
}
