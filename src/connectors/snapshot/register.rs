//! Reading the Enterprise Register's `register.csv` (CONTRACTS.md §2) as it
//! really is: UTF-8 with or without a BOM, `;`-separated, RFC 4180 quoting,
//! CRLF or LF. Columns are found by name, so a reordered or extended header
//! works; every row is checked (registration number checksum, real dates)
//! and a bad one comes back with its line, its raw bytes and the error
//! instead of stopping the file.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use csv::ByteRecord;

use crate::events::codes::normalize_regno;

/// The header of the real file, in its real order (CONTRACTS.md §2).
pub const HEADER: &str = "regcode;sepa;name;name_before_quotes;name_in_quotes;name_after_quotes;without_quotes;\
regtype;regtype_text;type;type_text;registered;terminated;closed;address;index;addressid;region;city;atvk;\
reregistration_term";

/// The columns the diff reads; any other column may come, go or move.
pub const REQUIRED_COLUMNS: [&str; 7] = ["regcode", "name", "type", "registered", "terminated", "closed", "address"];

/// A raw row kept in quarantine is cut here: an unterminated quote can swallow the rest of a file.
const MAX_RAW_BYTES: u64 = 16 * 1024;

/// The UTF-8 byte order mark the register's file often starts with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where each required column sits in this file's header.
#[derive(Clone, Copy, Debug)]
struct Columns {
    regcode: usize,
    name: usize,
    legal_form: usize,
    registered: usize,
    terminated: usize,
    closed: usize,
    address: usize,
    /// Fields in the header: a row with another count is misaligned.
    width: usize,
}

/// Why a header cannot be read as the register's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file is empty: not even a header.
    #[error("the file is empty (no header line)")]
    Empty,
    /// Columns the diff needs are not in the header; nothing can be compared.
    #[error("the header lacks the column(s) {}", .0.join(", "))]
    Missing(Vec<&'static str>),
}

/// One company row, borrowed from the reader's current record.
#[derive(Clone, Copy, Debug)]
pub struct Company<'a> {
    /// The 11-digit registration number, checked.
    pub regcode: &'a str,
    /// The registration number as a number, the key of the in-memory diff.
    pub key: u64,
    /// Full name, e.g. `SIA "Ābols; Bumbieris"`.
    pub name: &'a str,
    /// Legal form code (`type`), e.g. `SIA`.
    pub legal_form: &'a str,
    /// Registration date `YYYY-MM-DD`, or empty.
    pub registered: &'a str,
    /// Termination date `YYYY-MM-DD`, or empty.
    pub terminated: &'a str,
    /// Closed flag (e.g. `L`), or empty.
    pub closed: &'a str,
    /// Legal address, or empty.
    pub address: &'a str,
}

impl Company<'_> {
    /// Whether the register says the company has ended (terminated date or closed flag).
    pub fn ended(&self) -> bool {
        !self.terminated.is_empty() || !self.closed.is_empty()
    }

    /// The diff's fingerprint of this row.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(self.name, self.address, self.ended())
    }
}

/// A row that did not parse or validate, with what is needed to quarantine it.
#[derive(Clone, Debug)]
pub struct BadRow {
    /// Line of the file the row starts on (1 is the header).
    pub line: u64,
    /// The row's bytes as they are in the file (lossy UTF-8, cut at 16 KiB).
    pub raw: String,
    /// The column that is wrong, when one is.
    pub column: Option<&'static str>,
    /// What is wrong; a registration number is not personal data, but it is not repeated either.
    pub error: String,
    /// The row's registration number when that part was valid (the company is still in the file).
    pub key: Option<u64>,
}

/// What the reader found next.
#[derive(Debug)]
pub enum Item<'a> {
    /// A valid company row starting on `line`.
    Row {
        /// Line the row starts on.
        line: u64,
        /// The row.
        company: Company<'a>,
    },
    /// A row that goes to quarantine.
    Bad(BadRow),
}

/// A streaming reader of one register file.
pub struct RegisterReader {
    csv: csv::Reader<BufReader<File>>,
    /// A second handle on the file, to copy a bad row's exact bytes.
    raw: File,
    /// Bytes skipped before the CSV starts (the BOM), for raw offsets.
    skipped: u64,
    cols: Columns,
    record: ByteRecord,
    /// Required columns named twice: the header changed meaning.
    duplicates: Vec<String>,
    /// Fields of the last record read, and its line, to tell a truncated tail.
    last: Option<(usize, u64)>,
    /// Byte range of the last record in the file, for [`RegisterReader::last_raw`].
    span: (u64, u64),
}

impl RegisterReader {
    /// Opens `path` and reads its header; a missing column is a [`HeaderError`] inside the error.
    pub fn open(path: &Path) -> Result<RegisterReader> {
        let name = path.display();
        let mut file = File::open(path).with_context(|| format!("cannot open {name}"))?;
        let mut head = [0u8; 3];
        let mut got = 0;
        while got < head.len() {
            let n = file.read(&mut head[got..]).with_context(|| format!("cannot read {name}"))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let skipped = if head[..got] == *BOM { BOM.len() as u64 } else { 0 };
        file.seek(SeekFrom::Start(skipped)).with_context(|| format!("cannot read {name}"))?;
        let raw = File::open(path).with_context(|| format!("cannot open {name}"))?;
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(b';')
            // Rows end at LF; a CR before it is trimmed with the field. (csv's CRLF mode counts the
            // line of a record after CRLF one short and starts its bytes at the LF.)
            .terminator(csv::Terminator::Any(b'\n'))
            .has_headers(false)
            // Rows of the wrong width are reported as bad rows, not as a failed file.
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(BufReader::with_capacity(256 * 1024, file));
        let mut header = ByteRecord::new();
        if !csv.read_byte_record(&mut header).with_context(|| format!("cannot read the header of {name}"))? {
            return Err(HeaderError::Empty.into());
        }
        let names: Vec<String> = header.iter().map(|f| String::from_utf8_lossy(f).trim().to_lowercase()).collect();
        let find = |col: &str| names.iter().position(|n| n == col);
        let missing: Vec<&'static str> = REQUIRED_COLUMNS.iter().copied().filter(|c| find(c).is_none()).collect();
        if !missing.is_empty() {
            return Err(HeaderError::Missing(missing).into());
        }
        let duplicates = REQUIRED_COLUMNS
            .iter()
            .filter(|c| names.iter().filter(|n| n == c).count() > 1)
            .map(|c| c.to_string())
            .collect();
        let at = |col: &str| find(col).unwrap_or_default();
        let cols = Columns {
            regcode: at("regcode"),
            name: at("name"),
            legal_form: at("type"),
            registered: at("registered"),
            terminated: at("terminated"),
            closed: at("closed"),
            address: at("address"),
            width: names.len(),
        };
        Ok(RegisterReader { csv, raw, skipped, cols, record: ByteRecord::new(), duplicates, last: None, span: (0, 0) })
    }

    /// Required columns the header names more than once (the first is read).
    pub fn duplicate_columns(&self) -> &[String] {
        &self.duplicates
    }

    /// Bytes of the file read so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.csv.position().byte() + self.skipped
    }

    /// When the file ends mid-row: the last row is shorter than the header.
    pub fn truncated_tail(&self) -> Option<String> {
        match self.last {
            Some((fields, line)) if fields < self.cols.width => Some(format!(
                "truncated: the last row (line {line}) has {fields} of the header's {} fields",
                self.cols.width
            )),
            _ => None,
        }
    }

    /// The exact bytes of the row read last (for quarantining a row that parsed but is unwanted).
    pub fn last_raw(&mut self) -> Result<String> {
        read_raw(&mut self.raw, self.span.0, self.span.1)
    }

    /// The next row, valid or bad; `None` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        loop {
            let start = self.csv.position().clone();
            if !self.csv.read_byte_record(&mut self.record).context("cannot read the register file")? {
                return Ok(None);
            }
            // A blank line is not a row.
            if self.record.len() == 1 && self.record[0].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = self.record.position().map_or(start.line(), |p| p.line());
            let fields = self.record.len();
            self.last = Some((fields, line));
            let from = self.record.position().map_or(start.byte(), |p| p.byte()) + self.skipped;
            self.span = (from, self.csv.position().byte() + self.skipped);
            let checked = if fields != self.cols.width {
                Err((None, format!("has {fields} fields, the header has {}", self.cols.width)))
            } else {
                company(&self.cols, &self.record)
            };
            return match checked {
                Ok(company) => Ok(Some(Item::Row { line, company })),
                Err((column, error)) => {
                    let key = field(&self.record, self.cols.regcode)
                        .filter(|_| fields == self.cols.width)
                        .and_then(|s| normalize_regno(s).ok())
                        .and_then(|s| s.parse().ok());
                    let raw = read_raw(&mut self.raw, self.span.0, self.span.1)?;
                    Ok(Some(Item::Bad(BadRow { line, raw, column, error, key })))
                }
            };
        }
    }
}

/// The field at `i` as trimmed UTF-8, or `None` if it is not UTF-8.
fn field(rec: &ByteRecord, i: usize) -> Option<&str> {
    rec.get(i).and_then(|b| std::str::from_utf8(b).ok()).map(str::trim)
}

type RowError = (Option<&'static str>, String);

/// Checks one full-width record and borrows its company fields.
fn company<'a>(c: &Columns, rec: &'a ByteRecord) -> Result<Company<'a>, RowError> {
    let text = |i: usize, col: &'static str| field(rec, i).ok_or((Some(col), "not valid UTF-8".to_string()));
    let regcode = text(c.regcode, "regcode")?;
    let regcode = match normalize_regno(regcode) {
        Ok(_) => regcode,
        Err(e) => return Err((Some("regcode"), format!("invalid registration number: {e}"))),
    };
    let key = regcode.parse::<u64>().map_err(|_| (Some("regcode"), "not a number".to_string()))?;
    let name = text(c.name, "name")?;
    if name.is_empty() {
        return Err((Some("name"), "empty".into()));
    }
    let registered = date_or_empty(text(c.registered, "registered")?, "registered")?;
    let terminated = date_or_empty(text(c.terminated, "terminated")?, "terminated")?;
    Ok(Company {
        regcode,
        key,
        name,
        legal_form: text(c.legal_form, "type")?,
        registered,
        terminated,
        closed: text(c.closed, "closed")?,
        address: text(c.address, "address")?,
    })
}

/// An empty field, or a real date written `YYYY-MM-DD`.
fn date_or_empty<'a>(s: &'a str, col: &'static str) -> Result<&'a str, RowError> {
    if s.is_empty() || is_date(s) { Ok(s) } else { Err((Some(col), "expected a date YYYY-MM-DD or nothing".into())) }
}

/// Whether `s` is a real date in exactly the form `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// The bytes `from..to` of the file, without the line break, lossily decoded and capped.
fn read_raw(f: &mut File, from: u64, to: u64) -> Result<String> {
    let len = to.saturating_sub(from).min(MAX_RAW_BYTES);
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(from)).context("cannot re-read a bad row")?;
    f.read_exact(&mut buf).context("cannot re-read a bad row")?;
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if to - from > MAX_RAW_BYTES {
        s.push_str(" …(cut at 16 KiB)");
    }
    Ok(s)
}

/// Bit 0 of a fingerprint: the company has ended (terminated or closed).
const ENDED: u64 = 1;
/// Bits 1–32: a hash of the address.
const ADDRESS_SHIFT: u32 = 1;
/// Bits 33–63: a hash of the name.
const NAME_SHIFT: u32 = 33;

/// The 64-bit fingerprint the diff keeps per company: 31 bits of the name's
/// hash, 32 of the address's and the ended flag, so that one number tells
/// which of them changed (a change slips through with odds of 1 in 2³¹).
pub fn fingerprint(name: &str, address: &str, ended: bool) -> u64 {
    // xxh3 is specified and seedless here, so a fingerprint stored by one build is read the same by the next.
    let name = xxhash_rust::xxh3::xxh3_64(name.trim().as_bytes()) >> NAME_SHIFT;
    let address = xxhash_rust::xxh3::xxh3_64(address.trim().as_bytes()) & 0xFFFF_FFFF;
    (name << NAME_SHIFT) | (address << ADDRESS_SHIFT) | u64::from(ended)
}

/// What differs between two fingerprints of one company.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// The name changed.
    pub renamed: bool,
    /// The address changed.
    pub moved: bool,
    /// The company ended since (terminated date or closed flag newly set).
    pub ended: bool,
    /// The register took the end back (no event type exists for this).
    pub restored: bool,
}

/// Compares the kept fingerprint with the new one.
pub fn delta(old: u64, new: u64) -> Delta {
    Delta {
        renamed: old >> NAME_SHIFT != new >> NAME_SHIFT,
        moved: (old >> ADDRESS_SHIFT) & 0xFFFF_FFFF != (new >> ADDRESS_SHIFT) & 0xFFFF_FFFF,
        ended: old & ENDED == 0 && new & ENDED != 0,
        restored: old & ENDED != 0 && new & ENDED == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::codes::valid_test_regno;
    use std::io::Write;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// (line, name, address) of a good row, or (line, raw, error) of a bad one.
    type Read = Result<(u64, String, String), (u64, String, String)>;

    fn rows(r: &mut RegisterReader) -> Vec<Read> {
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            out.push(match item {
                Item::Row { line, company } => Ok((line, company.name.to_string(), company.address.to_string())),
                Item::Bad(b) => Err((b.line, b.raw, b.error)),
            });
        }
        out
    }

    #[test]
    fn bom_crlf_quotes_and_reordered_extended_header() {
        let a = valid_test_regno(1);
        let b = valid_test_regno(2);
        let text = format!(
            "\u{feff}extra;address;regcode;name;type;registered;terminated;closed\r\n\
             x;\"Rīga; Brīvības iela 1\";{a};\"SIA \"\"Ābols; Bumbieris\"\"\";SIA;2001-02-03;;\r\n\
             \r\n\
             y;\"Ventspils,\r\nOstas iela 2\";{b};AS \"Zeme\";AS;1999-12-31;2020-01-02;L\r\n"
        );
        let f = file(text.as_bytes());
        let mut r = RegisterReader::open(f.path()).unwrap();
        let got = rows(&mut r);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Ok((2, "SIA \"Ābols; Bumbieris\"".into(), "Rīga; Brīvības iela 1".into())));
        assert_eq!(got[1], Ok((4, "AS \"Zeme\"".into(), "Ventspils,\r\nOstas iela 2".into())));
        assert!(r.truncated_tail().is_none());

        // A quoted last field before CRLF keeps neither the quote nor the CR.
        let text = format!("regcode;name;type;registered;terminated;closed;address\r\n{a};N;SIA;;;;\"Rīga\"\r\n");
        let f = file(text.as_bytes());
        let mut r = RegisterReader::open(f.path()).unwrap();
        assert_eq!(rows(&mut r), vec![Ok((2, "N".into(), "Rīga".into()))]);
    }

    #[test]
    fn a_missing_column_is_named() {
        let f = file(b"regcode;name;type;registered;terminated\n");
        let e = RegisterReader::open(f.path()).err().unwrap();
        assert_eq!(e.to_string(), "the header lacks the column(s) closed, address");
        let f = file(b"");
        assert!(matches!(RegisterReader::open(f.path()).err().unwrap().downcast_ref(), Some(HeaderError::Empty)));
    }

    #[test]
    fn bad_rows_come_back_with_line_raw_bytes_and_error() {
        let a = valid_test_regno(1);
        let text = format!(
            "{HEADER}\n\
             {a};;N1;;;;;;;SIA;;2001-02-30;;;Adr;;;;;;\n\
             40003245753;;N2;;;;;;;SIA;;2001-02-03;;;Adr;;;;;;\n\
             {a};;\"N3;;;;;;;SIA;;2001-02-03;;;Adr;;;;;;\n"
        );
        let f = file(text.as_bytes());
        let mut r = RegisterReader::open(f.path()).unwrap();
        let got = rows(&mut r);
        let Err((2, raw, e)) = &got[0] else { panic!("{got:?}") };
        assert_eq!(raw, &format!("{a};;N1;;;;;;;SIA;;2001-02-30;;;Adr;;;;;;"));
        assert_eq!(e, "expected a date YYYY-MM-DD or nothing");
        let Err((3, _, e)) = &got[1] else { panic!("{got:?}") };
        assert!(e.contains("checksum"), "{e}");
        // An unterminated quote runs to the end of the file: one short row, and the tail is truncated.
        let Err((4, _, e)) = &got[2] else { panic!("{got:?}") };
        assert!(e.starts_with("has 3 fields"), "{e}");
        assert!(r.truncated_tail().unwrap().contains("line 4"));
    }

    #[test]
    fn fingerprints_tell_which_part_changed() {
        let base = fingerprint("SIA A", "Rīga", false);
        assert_eq!(delta(base, base), Delta::default());
        assert_eq!(delta(base, fingerprint(" SIA A ", "Rīga", false)), Delta::default());
        assert_eq!(delta(base, fingerprint("SIA B", "Rīga", false)), Delta { renamed: true, ..Delta::default() });
        assert_eq!(delta(base, fingerprint("SIA A", "Cēsis", false)), Delta { moved: true, ..Delta::default() });
        assert_eq!(delta(base, fingerprint("SIA A", "Rīga", true)), Delta { ended: true, ..Delta::default() });
        assert_eq!(delta(fingerprint("SIA A", "Rīga", true), base), Delta { restored: true, ..Delta::default() });
        // Stored fingerprints must read the same in every build.
        assert_eq!(fingerprint("SIA A", "Rīga", true), 963_632_928_109_207_281);
    }
}
