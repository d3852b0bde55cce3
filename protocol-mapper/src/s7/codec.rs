//! S7 values as JSON: the bytes of a variable decoded to the value published, and a `/set`
//! value encoded to what is written. Big-endian throughout, as the CPU stores it; text is
//! Latin-1, one byte per character, as S7 STRING and CHAR are.

use commissioning::s7_address::{S7Type, S7Variable};
use serde_json::Value as Json;

/// What a write puts into the CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// Bytes from the variable's first byte.
    Bytes(Vec<u8>),
    /// Single bits, each as (byte, bit, value): BOOL variables are written bit by bit, so the
    /// other bits of their bytes stay as the program set them.
    Bits(Vec<(u32, u8, bool)>),
}

/// Decodes a variable from its bytes (exactly [`S7Variable::byte_len`] of them).
pub fn decode(variable: &S7Variable, bytes: &[u8]) -> Result<Json, String> {
    if bytes.len() != variable.byte_len() as usize {
        return Err(format!(
            "the CPU answered {} bytes for a variable of {}",
            bytes.len(),
            variable.byte_len()
        ));
    }
    let count = variable.count.map(|n| n as usize);
    Ok(match variable.data_type {
        S7Type::Bool => {
            let bit_at = |i: usize| {
                let bit = usize::from(variable.bit) + i;
                Json::Bool(bytes[bit / 8] >> (bit % 8) & 1 == 1)
            };
            match count {
                None => bit_at(0),
                Some(n) => Json::Array((0..n).map(bit_at).collect()),
            }
        }
        S7Type::Char => {
            let text = latin1(bytes);
            Json::String(match count {
                None => text,
                Some(_) => text.trim_end_matches('\0').to_string(),
            })
        }
        S7Type::String { max_len } => {
            let one = |b: &[u8]| Json::String(s7_string(b, max_len));
            match count {
                None => one(bytes),
                Some(_) => Json::Array(
                    bytes
                        .chunks(variable.data_type.size() as usize)
                        .map(one)
                        .collect(),
                ),
            }
        }
        other => {
            let size = other.size() as usize;
            let values = bytes.chunks(size).map(|b| number(other, b));
            match count {
                None => values.into_iter().next().unwrap_or(Json::Null),
                Some(_) => Json::Array(values.collect()),
            }
        }
    })
}

/// One numeric element; a REAL that is NaN or infinite has no JSON number and is `null`.
fn number(data_type: S7Type, b: &[u8]) -> Json {
    let array = |n: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&b[..n]);
        a
    };
    let [b0, b1, b2, b3, b4, b5, b6, b7] = array(b.len().min(8));
    match data_type {
        S7Type::Byte => Json::from(b0),
        S7Type::Word => Json::from(u16::from_be_bytes([b0, b1])),
        S7Type::Int => Json::from(i16::from_be_bytes([b0, b1])),
        S7Type::DWord => Json::from(u32::from_be_bytes([b0, b1, b2, b3])),
        S7Type::DInt => Json::from(i32::from_be_bytes([b0, b1, b2, b3])),
        S7Type::Real => float(f64::from(f32::from_be_bytes([b0, b1, b2, b3]))),
        S7Type::LReal => float(f64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])),
        S7Type::LInt => Json::from(i64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])),
        S7Type::Bool | S7Type::Char | S7Type::String { .. } => Json::Null,
    }
}

fn float(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// An S7 STRING: the current length (byte 1) says how many characters count, bounded by the
/// declared maximum and by what was read.
fn s7_string(bytes: &[u8], max_len: u8) -> String {
    let current = bytes.get(1).copied().unwrap_or(0).min(max_len);
    let text = bytes.get(2..).unwrap_or(&[]);
    latin1(&text[..usize::from(current).min(text.len())])
}

/// Encodes `value` for a write to `variable`. The error says what the variable takes.
pub fn encode(variable: &S7Variable, value: &Json) -> Result<Encoded, String> {
    let elements: Vec<&Json> = match (variable.count, variable.data_type, value) {
        // An array of CHAR is written from one text.
        (Some(_), S7Type::Char, _) | (None, _, _) => vec![value],
        (Some(n), _, Json::Array(items)) if items.len() == n as usize => items.iter().collect(),
        (Some(n), data_type, _) => {
            return Err(format!("expected an array of {n} {data_type} values"));
        }
    };
    if variable.data_type == S7Type::Bool {
        let mut bits = Vec::with_capacity(elements.len());
        for (i, element) in elements.iter().enumerate() {
            let bit = u32::from(variable.bit) + i as u32;
            bits.push((variable.byte + bit / 8, (bit % 8) as u8, boolean(element)?));
        }
        return Ok(Encoded::Bits(bits));
    }
    if let (Some(n), S7Type::Char) = (variable.count, variable.data_type) {
        let text = value
            .as_str()
            .ok_or_else(|| format!("expected a text of at most {n} characters"))?;
        let mut bytes = latin1_bytes(text)?;
        if bytes.len() > n as usize {
            return Err(format!("{} characters do not fit in {n}", bytes.len()));
        }
        bytes.resize(n as usize, 0);
        return Ok(Encoded::Bytes(bytes));
    }
    let mut bytes = Vec::with_capacity(variable.byte_len() as usize);
    for element in elements {
        encode_element(variable.data_type, element, &mut bytes)?;
    }
    Ok(Encoded::Bytes(bytes))
}

fn boolean(value: &Json) -> Result<bool, String> {
    match value {
        Json::Bool(b) => Ok(*b),
        Json::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Json::Number(n) if n.as_u64() == Some(1) => Ok(true),
        other => Err(format!(
            "expected true, false, 0 or 1 for a BOOL, got {other}"
        )),
    }
}

fn latin1_bytes(text: &str) -> Result<Vec<u8>, String> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .map_err(|_| format!("`{c}` is not a Latin-1 character; S7 text holds only those"))
        })
        .collect()
}

fn encode_element(data_type: S7Type, value: &Json, out: &mut Vec<u8>) -> Result<(), String> {
    let integer = |min: i64, max: i64| -> Result<i64, String> {
        let n = value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("expected a whole number for {data_type}, got {value}"))?;
        if n < min || n > max {
            return Err(format!("{n} is outside {data_type}'s range {min} to {max}"));
        }
        Ok(n)
    };
    match data_type {
        S7Type::Byte => out.push(integer(0, 255)? as u8),
        S7Type::Word => out.extend_from_slice(&(integer(0, 65_535)? as u16).to_be_bytes()),
        S7Type::Int => out.extend_from_slice(&(integer(-32_768, 32_767)? as i16).to_be_bytes()),
        S7Type::DWord => {
            out.extend_from_slice(&(integer(0, i64::from(u32::MAX))? as u32).to_be_bytes());
        }
        S7Type::DInt => out.extend_from_slice(
            &(integer(i64::from(i32::MIN), i64::from(i32::MAX))? as i32).to_be_bytes(),
        ),
        S7Type::LInt => out.extend_from_slice(&integer(i64::MIN, i64::MAX)?.to_be_bytes()),
        S7Type::Real | S7Type::LReal => {
            let f = value
                .as_f64()
                .ok_or_else(|| format!("expected a number for {data_type}, got {value}"))?;
            if data_type == S7Type::Real {
                if f.abs() > f64::from(f32::MAX) {
                    return Err(format!("{f} is outside REAL's range"));
                }
                out.extend_from_slice(&(f as f32).to_be_bytes());
            } else {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        S7Type::Char => {
            let bytes = value
                .as_str()
                .map(latin1_bytes)
                .transpose()?
                .filter(|b| b.len() == 1)
                .ok_or_else(|| format!("expected one character for a CHAR, got {value}"))?;
            out.extend_from_slice(&bytes);
        }
        S7Type::String { max_len } => {
            let text = value
                .as_str()
                .ok_or_else(|| format!("expected a text for a STRING, got {value}"))?;
            let mut bytes = latin1_bytes(text)?;
            if bytes.len() > usize::from(max_len) {
                return Err(format!(
                    "{} characters do not fit in a STRING of at most {max_len}",
                    bytes.len()
                ));
            }
            out.extend_from_slice(&[max_len, bytes.len() as u8]);
            bytes.resize(usize::from(max_len), 0);
            out.extend_from_slice(&bytes);
        }
        S7Type::Bool => return Err("a BOOL is written as bits".into()),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn var(text: &str) -> S7Variable {
        S7Variable::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every type decodes what it encodes, with the bytes a CPU holds.
    #[test]
    fn round_trips_with_the_bytes_of_the_cpu() {
        let table = [
            ("DB1,REAL0", json!(21.5), vec![0x41, 0xAC, 0, 0]),
            (
                "DB1,LREAL0",
                json!(-1.25),
                vec![0xBF, 0xF4, 0, 0, 0, 0, 0, 0],
            ),
            ("DB1,INT0", json!(-2), vec![0xFF, 0xFE]),
            ("DB1,WORD0", json!(65535), vec![0xFF, 0xFF]),
            (
                "DB1,DINT0",
                json!(-100_000),
                (-100_000i32).to_be_bytes().to_vec(),
            ),
            (
                "DB1,DWORD0",
                json!(4_000_000_000u32),
                4_000_000_000u32.to_be_bytes().to_vec(),
            ),
            ("DB1,LINT0", json!(-5), (-5i64).to_be_bytes().to_vec()),
            ("DB1,B0", json!(200), vec![200]),
            ("DB1,C0", json!("A"), vec![b'A']),
            ("DB1,C0.4", json!("ab"), vec![b'a', b'b', 0, 0]),
            ("DB1,S0.4", json!("hé"), vec![4, 2, b'h', 0xE9, 0, 0]),
            ("DB1,INT0.2", json!([1, -1]), vec![0, 1, 0xFF, 0xFF]),
            ("DB1,B0,3", json!([1, 2, 3]), vec![1, 2, 3]),
            ("DB1,S0.1.2", json!(["a", ""]), vec![1, 1, b'a', 1, 0, 0]),
        ];
        for (address, value, bytes) in table {
            let variable = var(address);
            assert_eq!(
                encode(&variable, &value),
                Ok(Encoded::Bytes(bytes.clone())),
                "{address}"
            );
            assert_eq!(decode(&variable, &bytes), Ok(value), "{address}");
        }
    }

    #[test]
    fn bools_are_single_bits() {
        assert_eq!(decode(&var("DB1,X0.3"), &[0b0000_1000]), Ok(json!(true)));
        assert_eq!(decode(&var("DB1,X0.3"), &[0b1111_0111]), Ok(json!(false)));
        assert_eq!(
            decode(&var("DB1,X0.6.4"), &[0b0100_0000, 0b0000_0010]),
            Ok(json!([true, false, false, true]))
        );
        assert_eq!(
            encode(&var("DB1,X3.7.2"), &json!([true, 0])),
            Ok(Encoded::Bits(vec![(3, 7, true), (4, 0, false)]))
        );
        assert_eq!(
            encode(&var("M0.1"), &json!(1)),
            Ok(Encoded::Bits(vec![(0, 1, true)]))
        );
    }

    #[test]
    fn a_string_shows_its_current_length_only() {
        // Max 10, current 3, garbage after.
        let bytes = [
            10, 3, b'a', b'b', b'c', b'x', b'x', b'x', b'x', b'x', b'x', b'x',
        ];
        assert_eq!(decode(&var("DB1,S0.10"), &bytes), Ok(json!("abc")));
        // A current length past the maximum is cut at the maximum.
        let mut broken = bytes;
        broken[1] = 200;
        assert_eq!(decode(&var("DB1,S0.10"), &broken), Ok(json!("abcxxxxxxx")));
    }

    #[test]
    fn values_that_do_not_fit_are_refused_with_the_range() {
        let table = [
            ("DB1,INT0", json!(40_000), "range -32768 to 32767"),
            ("DB1,B0", json!(-1), "range 0 to 255"),
            ("DB1,INT0", json!("7"), "whole number"),
            ("DB1,INT0", json!(1.5), "whole number"),
            ("DB1,REAL0", json!(1e39), "outside REAL"),
            ("DB1,S0.2", json!("abc"), "at most 2"),
            ("DB1,S0.5", json!("€"), "Latin-1"),
            ("DB1,INT0.2", json!([1]), "array of 2"),
            ("DB1,X0.0", json!("on"), "true, false"),
            ("DB1,C0", json!("ab"), "one character"),
        ];
        for (address, value, expected) in table {
            let error = encode(&var(address), &value).unwrap_err();
            assert!(error.contains(expected), "{address} {value}: {error}");
        }
    }

    #[test]
    fn a_nan_real_is_null_and_short_answers_are_errors() {
        assert_eq!(
            decode(&var("DB1,REAL0"), &f32::NAN.to_be_bytes()),
            Ok(Json::Null)
        );
        assert!(decode(&var("DB1,REAL0"), &[0, 0]).is_err());
    }
}
