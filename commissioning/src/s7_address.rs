//! Siemens S7 variable addresses, checked at install time so a typo is a validation error with a
//! line number rather than a runtime failure. Two notations are read, case-insensitively:
//!
//! - The comma form of Connectware's S7 files (nodes7's notation): `DB10,REAL4` (a REAL at byte
//!   4 of DB10), `DB1,X0.1` (bit 1 of byte 0), `DB3,S20.10` (a STRING of at most 10 characters
//!   at byte 20), `DB1,INT12.2` (two INTs: an array), `DB1,X14.0.8` (eight bits), `DB1,C0.20`
//!   (20 characters read as one text), `DB1,B0,20` (20 bytes; a trailing `,count` is the same
//!   as `.count`). The memory areas take the same types without the `DB<n>,`: `MR4`, `MW10`,
//!   `MB0.8`, `M200.0`, `I0.0` (German `E0.0`), `Q1.2` (German `A1.2`), `IW64`, `QD4`.
//! - The Step 7 form: `DB1.DBX0.1`, `DB1.DBB0`, `DB1.DBW0`, `DB1.DBD4`.
//!
//! Types: `X` (BOOL), `B`/`BYTE`, `C`/`CHAR`, `W`/`WORD`, `I`/`INT`, `DW`/`D`/`DWORD`,
//! `DI`/`DINT`, `R`/`REAL`, `LR`/`LREAL`, `LI`/`LINT`, `S`/`STRING`. All values are big-endian,
//! as the CPU stores them.

use std::fmt;

/// Where a variable lives in the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum S7Area {
    /// A data block and its number.
    DataBlock(u16),
    /// Flags (Merker), `M`.
    Merker,
    /// The process image of the inputs, `I` or `E`.
    Input,
    /// The process image of the outputs, `Q` or `A`.
    Output,
}

impl S7Area {
    /// The area code of S7comm's address item.
    pub fn code(self) -> u8 {
        match self {
            S7Area::Input => 0x81,
            S7Area::Output => 0x82,
            S7Area::Merker => 0x83,
            S7Area::DataBlock(_) => 0x84,
        }
    }

    /// The data block number of S7comm's address item (0 outside data blocks).
    pub fn db_number(self) -> u16 {
        match self {
            S7Area::DataBlock(n) => n,
            _ => 0,
        }
    }
}

/// The type of one element of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S7Type {
    Bool,
    Byte,
    /// Characters: an array of them is read as one text.
    Char,
    Word,
    Int,
    DWord,
    DInt,
    Real,
    LReal,
    LInt,
    /// An S7 STRING: a byte of the maximum length, a byte of the current length, then the
    /// characters (`max_len` bytes).
    String {
        max_len: u8,
    },
}

impl S7Type {
    /// Bytes one element takes in the CPU (a BOOL takes a bit; see [`S7Variable::byte_len`]).
    pub fn size(self) -> u32 {
        match self {
            S7Type::Bool | S7Type::Byte | S7Type::Char => 1,
            S7Type::Word | S7Type::Int => 2,
            S7Type::DWord | S7Type::DInt | S7Type::Real => 4,
            S7Type::LReal | S7Type::LInt => 8,
            S7Type::String { max_len } => 2 + u32::from(max_len),
        }
    }

    /// The type named by an endpoint's `dataType` (the S7 names), for reading the bytes of an
    /// address as another type of the same size (`DB1.DBD4` as a REAL).
    pub fn from_name(name: &str) -> Option<S7Type> {
        Some(match name.to_ascii_uppercase().as_str() {
            "X" | "BOOL" => S7Type::Bool,
            "B" | "BYTE" => S7Type::Byte,
            "C" | "CHAR" => S7Type::Char,
            "W" | "WORD" => S7Type::Word,
            "I" | "INT" => S7Type::Int,
            "D" | "DW" | "DWORD" => S7Type::DWord,
            "DI" | "DINT" => S7Type::DInt,
            "R" | "REAL" => S7Type::Real,
            "LR" | "LREAL" => S7Type::LReal,
            "LI" | "LINT" => S7Type::LInt,
            _ => return None,
        })
    }
}

impl fmt::Display for S7Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            S7Type::Bool => "BOOL",
            S7Type::Byte => "BYTE",
            S7Type::Char => "CHAR",
            S7Type::Word => "WORD",
            S7Type::Int => "INT",
            S7Type::DWord => "DWORD",
            S7Type::DInt => "DINT",
            S7Type::Real => "REAL",
            S7Type::LReal => "LREAL",
            S7Type::LInt => "LINT",
            S7Type::String { .. } => "STRING",
        };
        f.write_str(name)
    }
}

/// One variable: a scalar, or `count` consecutive elements (an array).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S7Variable {
    pub area: S7Area,
    /// The byte the variable starts at.
    pub byte: u32,
    /// The first bit, for BOOL (0-7).
    pub bit: u8,
    pub data_type: S7Type,
    /// `Some(n)` for an array of `n` elements.
    pub count: Option<u32>,
}

/// The largest variable Ironbridge reads, in bytes: more than any S7 CPU's data block holds in
/// one place a commissioning file would name, and a bound on what one read buffers.
pub const MAX_VARIABLE_BYTES: u32 = 65_536;

/// The byte offset an S7 address item can carry (a bit address in 3 bytes).
const MAX_BYTE: u32 = (1 << 21) - 1;

const HINT: &str = "write e.g. `DB10,REAL4`, `DB1,X0.1`, `DB3,S20.10`, `DB1,INT12.2` (an array of 2), `M200.0`, `MW10`, `I0.0`, `Q1.2` or the Step 7 form `DB1.DBW0`, `DB1.DBX0.1`";

impl S7Variable {
    /// Reads an address in either notation (see the module documentation).
    pub fn parse(text: &str) -> Result<S7Variable, String> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        let variable = if let Some(rest) = upper.strip_prefix("DB") {
            parse_data_block(rest)
        } else {
            parse_memory_area(&upper)
        }
        .map_err(|why| format!("`{trimmed}` is not an S7 address: {why}; {HINT}"))?;
        variable
            .check()
            .map_err(|why| format!("`{trimmed}`: {why}"))?;
        Ok(variable)
    }

    /// The same bytes read as `data_type`: an endpoint's `dataType` on a `DB1.DBD4`. The sizes
    /// must match.
    pub fn read_as(self, data_type: S7Type) -> Result<S7Variable, String> {
        if self.data_type == data_type {
            return Ok(self);
        }
        if matches!(self.data_type, S7Type::Bool) || matches!(data_type, S7Type::Bool) {
            return Err(format!(
                "a {} address cannot be read as {data_type}",
                self.data_type
            ));
        }
        if self.data_type.size() != data_type.size() {
            return Err(format!(
                "the address holds a {} ({} bytes); {data_type} takes {} bytes",
                self.data_type,
                self.data_type.size(),
                data_type.size()
            ));
        }
        Ok(S7Variable { data_type, ..self })
    }

    /// The bytes the variable covers, from [`S7Variable::byte`].
    pub fn byte_len(&self) -> u32 {
        let count = self.count.unwrap_or(1);
        match self.data_type {
            S7Type::Bool => (u32::from(self.bit) + count).div_ceil(8),
            other => other.size() * count,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.bit > 7 {
            return Err(format!("bit {} does not exist; bits are 0-7", self.bit));
        }
        if self.count == Some(0) {
            return Err("an array needs at least one element".into());
        }
        if let S7Type::String { max_len: 0 } = self.data_type {
            return Err("a STRING needs its maximum length, e.g. `S20.10`".into());
        }
        let count = u64::from(self.count.unwrap_or(1));
        let bytes = match self.data_type {
            S7Type::Bool => (u64::from(self.bit) + count).div_ceil(8),
            other => u64::from(other.size()) * count,
        };
        if bytes > u64::from(MAX_VARIABLE_BYTES) {
            return Err(format!(
                "{bytes} bytes is more than one variable may cover ({MAX_VARIABLE_BYTES})"
            ));
        }
        if u64::from(self.byte) + bytes > u64::from(MAX_BYTE) + 1 {
            return Err(format!(
                "byte {} is beyond what S7 can address ({MAX_BYTE})",
                self.byte
            ));
        }
        Ok(())
    }
}

/// After `DB`: `<n>,<type><byte>[.<n>[.<n>]][,<count>]` or `<n>.DB<X|B|W|D><byte>[.<bit>]`.
fn parse_data_block(rest: &str) -> Result<S7Variable, String> {
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return Err("the data block number is missing after `DB`".into());
    }
    let number: u16 = rest[..digits]
        .parse()
        .map_err(|_| format!("data block {} is above 65535", &rest[..digits]))?;
    if number == 0 {
        return Err("data blocks are numbered from 1".into());
    }
    let area = S7Area::DataBlock(number);
    let after = &rest[digits..];
    if let Some(item) = after.strip_prefix(',') {
        return parse_item(area, item);
    }
    if let Some(step7) = after.strip_prefix(".DB") {
        return parse_step7(area, step7);
    }
    Err(format!(
        "expected `,` or `.DB` after `DB{number}`, found `{after}`"
    ))
}

/// `M…`, `I…`/`E…`, `Q…`/`A…`: the area letter, then a type (none for a bit) and the byte.
fn parse_memory_area(text: &str) -> Result<S7Variable, String> {
    let mut chars = text.chars();
    let area = match chars.next() {
        Some('M') => S7Area::Merker,
        Some('I' | 'E') => S7Area::Input,
        Some('Q' | 'A') => S7Area::Output,
        Some(other) => {
            return Err(format!(
                "`{other}` is not an area; use DB<n>, M, I (E) or Q (A)"
            ));
        }
        None => return Err("the address is empty".into()),
    };
    parse_item(area, chars.as_str())
}

/// `<type><byte>[.<n>[.<n>]][,<count>]`, where a type of its own (none, or `X`) is a BOOL
/// and takes its bit first.
fn parse_item(area: S7Area, item: &str) -> Result<S7Variable, String> {
    let letters = item.chars().take_while(char::is_ascii_alphabetic).count();
    let (type_name, numbers) = item.split_at(letters);
    let (numbers, comma_count) = match numbers.split_once(',') {
        Some((numbers, count)) => (numbers, Some(parse_number(count, "array length")?)),
        None => (numbers, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(parse_number(part, "number")?);
    }
    let element = match type_name {
        "" | "X" => None,
        "S" | "STRING" => Some(S7Type::String { max_len: 0 }),
        other => {
            Some(S7Type::from_name(other).ok_or_else(|| format!("`{other}` is not an S7 type"))?)
        }
    };
    let too_many = || format!("too many `.` parts in `{numbers}`");
    let (data_type, bit, count) = match element {
        None => match values[..] {
            [_] => return Err("a bit address needs its bit, e.g. `X0.1` or `M200.0`".into()),
            [_, bit] => (S7Type::Bool, bit, None),
            [_, bit, count] => (S7Type::Bool, bit, Some(count)),
            _ => return Err(too_many()),
        },
        Some(S7Type::String { .. }) => {
            let max_len = |n: u32| {
                u8::try_from(n)
                    .map_err(|_| format!("a STRING holds at most 254 characters, not {n}"))
                    .and_then(|n| {
                        (n <= 254)
                            .then_some(n)
                            .ok_or_else(|| "a STRING holds at most 254 characters".to_string())
                    })
            };
            match values[..] {
                [_] => {
                    return Err(
                        "a STRING needs its maximum length, e.g. `S20.10` (10 characters at byte 20)"
                            .into(),
                    );
                }
                [_, len] => (
                    S7Type::String {
                        max_len: max_len(len)?,
                    },
                    0,
                    None,
                ),
                [_, len, count] => (
                    S7Type::String {
                        max_len: max_len(len)?,
                    },
                    0,
                    Some(count),
                ),
                _ => return Err(too_many()),
            }
        }
        Some(other) => match values[..] {
            [_] => (other, 0, None),
            [_, count] => (other, 0, Some(count)),
            _ => return Err(too_many()),
        },
    };
    let count = match (count, comma_count) {
        (Some(_), Some(_)) => {
            return Err("give the array length once, as `.count` or `,count`".into());
        }
        (count, comma) => count.or(comma),
    };
    let bit = u8::try_from(bit).map_err(|_| format!("bit {bit} does not exist; bits are 0-7"))?;
    Ok(S7Variable {
        area,
        byte: values[0],
        bit,
        data_type,
        count,
    })
}

/// After `DB<n>.DB`: `X<byte>.<bit>`, `B<byte>`, `W<byte>` or `D<byte>`.
fn parse_step7(area: S7Area, rest: &str) -> Result<S7Variable, String> {
    let mut chars = rest.chars();
    let kind = chars.next();
    let numbers: Vec<&str> = chars.as_str().split('.').collect();
    let byte = parse_number(numbers[0], "byte")?;
    let (data_type, bit) = match (kind, &numbers[..]) {
        (Some('X'), [_, bit]) => (S7Type::Bool, parse_number(bit, "bit")?),
        (Some('X'), _) => return Err("`DBX` needs byte and bit, e.g. `DB1.DBX0.1`".into()),
        (Some('B'), [_]) => (S7Type::Byte, 0),
        (Some('W'), [_]) => (S7Type::Word, 0),
        (Some('D'), [_]) => (S7Type::DWord, 0),
        (Some('B' | 'W' | 'D'), _) => {
            return Err("only `DBX` takes a bit; `DBB`, `DBW` and `DBD` take a byte".into());
        }
        _ => return Err("after `.DB` comes X, B, W or D".into()),
    };
    let bit = u8::try_from(bit).map_err(|_| format!("bit {bit} does not exist; bits are 0-7"))?;
    Ok(S7Variable {
        area,
        byte,
        bit,
        data_type,
        count: None,
    })
}

fn parse_number(text: &str, what: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a {what}, found `{text}`"));
    }
    text.parse()
        .map_err(|_| format!("{what} {text} is out of range"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> S7Variable {
        S7Variable::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn var(area: S7Area, byte: u32, bit: u8, data_type: S7Type, count: Option<u32>) -> S7Variable {
        S7Variable {
            area,
            byte,
            bit,
            data_type,
            count,
        }
    }

    #[test]
    fn comma_form_of_connectware_files() {
        let db = S7Area::DataBlock;
        let table = [
            ("DB10,REAL4", var(db(10), 4, 0, S7Type::Real, None)),
            ("DB1,X0.1", var(db(1), 0, 1, S7Type::Bool, None)),
            ("db2,int6", var(db(2), 6, 0, S7Type::Int, None)),
            ("DB6,DINT0", var(db(6), 0, 0, S7Type::DInt, None)),
            (
                "DB3,S20.10",
                var(db(3), 20, 0, S7Type::String { max_len: 10 }, None),
            ),
            ("DB1,B0,20", var(db(1), 0, 0, S7Type::Byte, Some(20))),
            ("DB1,B0.20", var(db(1), 0, 0, S7Type::Byte, Some(20))),
            ("DB1,REAL0.20", var(db(1), 0, 0, S7Type::Real, Some(20))),
            ("DB1,X14.0.8", var(db(1), 14, 0, S7Type::Bool, Some(8))),
            ("DB1,C0.20", var(db(1), 0, 0, S7Type::Char, Some(20))),
            ("DB1,LREAL8", var(db(1), 8, 0, S7Type::LReal, None)),
            ("DB1,W2", var(db(1), 2, 0, S7Type::Word, None)),
            ("DB1,DW4", var(db(1), 4, 0, S7Type::DWord, None)),
            ("DB1,R8", var(db(1), 8, 0, S7Type::Real, None)),
        ];
        for (text, expected) in table {
            assert_eq!(parsed(text), expected, "{text}");
        }
    }

    #[test]
    fn memory_areas() {
        let table = [
            ("M200.0", var(S7Area::Merker, 200, 0, S7Type::Bool, None)),
            ("I0.0", var(S7Area::Input, 0, 0, S7Type::Bool, None)),
            ("E0.7", var(S7Area::Input, 0, 7, S7Type::Bool, None)),
            ("Q1.2", var(S7Area::Output, 1, 2, S7Type::Bool, None)),
            ("A1.2", var(S7Area::Output, 1, 2, S7Type::Bool, None)),
            ("MR4", var(S7Area::Merker, 4, 0, S7Type::Real, None)),
            ("MW10", var(S7Area::Merker, 10, 0, S7Type::Word, None)),
            (
                "MB100.8",
                var(S7Area::Merker, 100, 0, S7Type::Byte, Some(8)),
            ),
            (
                "MB100,8",
                var(S7Area::Merker, 100, 0, S7Type::Byte, Some(8)),
            ),
            ("IW64", var(S7Area::Input, 64, 0, S7Type::Word, None)),
            ("QD4", var(S7Area::Output, 4, 0, S7Type::DWord, None)),
        ];
        for (text, expected) in table {
            assert_eq!(parsed(text), expected, "{text}");
        }
    }

    #[test]
    fn step7_form() {
        let db = S7Area::DataBlock(1);
        assert_eq!(parsed("DB1.DBX0.1"), var(db, 0, 1, S7Type::Bool, None));
        assert_eq!(parsed("DB1.DBB3"), var(db, 3, 0, S7Type::Byte, None));
        assert_eq!(parsed("DB1.DBW0"), var(db, 0, 0, S7Type::Word, None));
        assert_eq!(parsed("DB1.DBD4"), var(db, 4, 0, S7Type::DWord, None));
        let real = parsed("DB1.DBD4").read_as(S7Type::Real).expect("same size");
        assert_eq!(real.data_type, S7Type::Real);
        let error = parsed("DB1.DBW0").read_as(S7Type::Real).unwrap_err();
        assert!(error.contains("4 bytes"), "{error}");
    }

    #[test]
    fn byte_lengths() {
        assert_eq!(parsed("DB1,X0.7").byte_len(), 1);
        assert_eq!(parsed("DB1,X0.7.2").byte_len(), 2);
        assert_eq!(parsed("DB1,S0.10").byte_len(), 12);
        assert_eq!(parsed("DB1,S0.10.3").byte_len(), 36);
        assert_eq!(parsed("DB1,INT0.5").byte_len(), 10);
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        let table = [
            ("DB1,X0.8", "bits are 0-7"),
            ("DB1,X0", "needs its bit"),
            ("M200", "needs its bit"),
            ("DB1,S20", "maximum length"),
            ("DB1,S20.300", "at most 254"),
            ("DB1,FLOAT4", "`FLOAT` is not an S7 type"),
            ("DB0,INT0", "numbered from 1"),
            ("DB70000,INT0", "above 65535"),
            ("DB1;INT0", "expected `,` or `.DB`"),
            ("Z0.0", "not an area"),
            ("DB1,INT0.0", "at least one element"),
            ("DB1,INT0.2,3", "once"),
            ("DB1.DBW0.1", "only `DBX` takes a bit"),
            ("DB1,REAL0.20000", "more than one variable"),
            ("", "empty"),
            ("DB1,INTx", "expected a number"),
        ];
        for (text, expected) in table {
            let error = S7Variable::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
