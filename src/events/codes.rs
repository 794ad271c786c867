//! Latvian subject codes: personal codes (`personas kods`) and legal-entity registration numbers.
//!
//! Every code that crosses a boundary is validated and brought to one canonical spelling here, so
//! that the same person or company is never stored under two keys. Errors never repeat the code:
//! codes are personal data and error texts end up in logs and quarantine tables.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Weights of the old-format personal-code check digit (CONTRACTS.md §1).
const PERSON_WEIGHTS: [u32; 10] = [1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Weights of the registration-number checksum over all eleven digits (as python-stdnum `lv.pvn`).
const REGNO_WEIGHTS: [u32; 11] = [9, 1, 4, 8, 3, 10, 2, 5, 7, 6, 1];

/// Weighted sum of a valid registration number, modulo 11.
const REGNO_REMAINDER: u32 = 3;

/// Prefix (as digit values) of the personal codes issued since July 2017, which carry no birth date.
const NEW_FORMAT_PREFIX: &[u8] = &[3, 2];

/// Why a code was rejected; the text names the problem and never contains the code itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Codes of both kinds are exactly eleven digits, so anything else is not a code at all.
    #[error("not 11 digits")]
    NotElevenDigits,
    /// Only the personal-code spelling `DDMMYY-NNNNN` has a hyphen, and only in that place.
    #[error("hyphen is not after the sixth digit")]
    MisplacedHyphen,
    /// The seventh digit of an old-format code names the century, and only 0, 1 and 2 exist.
    #[error("unknown century digit")]
    UnknownCentury,
    /// The first six digits of an old-format code are a birth date, so they must be a real one.
    #[error("not a real date")]
    NotARealDate,
    /// Catches typos in old-format personal codes.
    #[error("check digit does not match")]
    CheckDigit,
    /// Registration numbers start with 4–9; a lower first digit is a personal code's range.
    #[error("first digit is not that of a registration number")]
    NotARegnoPrefix,
    /// Catches typos in registration numbers.
    #[error("registration number checksum does not match")]
    RegnoChecksum,
}

/// Which kind of subject a code names; rules and routing treat people and companies differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A natural person, named by a personal code.
    Person,
    /// A legal entity, named by a registration number.
    Company,
}

/// Brings a personal code to `DDMMYY-NNNNN` so that both input spellings map to one key.
pub fn normalize_personal_code(s: &str) -> Result<String, CodeError> {
    let digits = personal_code_digits(s.trim())?;
    if !digits.starts_with(NEW_FORMAT_PREFIX) {
        check_old_format(&digits)?;
    }
    let mut out = String::with_capacity(12);
    for (i, d) in digits.iter().enumerate() {
        if i == 6 {
            out.push('-');
        }
        out.push(char::from(b'0' + d));
    }
    Ok(out)
}

/// Checks a registration number and returns its eleven digits, the only spelling registers use.
pub fn normalize_regno(s: &str) -> Result<String, CodeError> {
    let s = s.trim();
    if s.contains('-') && s.len() == 12 {
        // A hyphenated 11-digit string is a personal-code spelling, never a registration number.
        return Err(CodeError::MisplacedHyphen);
    }
    let digits = eleven_digits(s)?;
    if digits[0] <= 3 {
        return Err(CodeError::NotARegnoPrefix);
    }
    if regno_sum(&digits) % 11 != REGNO_REMAINDER {
        return Err(CodeError::RegnoChecksum);
    }
    Ok(s.to_owned())
}

/// Accepts whichever code a `subject` holds; unambiguous, as regnos start with 4–9 and personal codes with 0–3.
pub fn normalize_subject(s: &str) -> Result<(SubjectKind, String), CodeError> {
    match normalize_personal_code(s) {
        Ok(code) => Ok((SubjectKind::Person, code)),
        Err(person_err) => {
            let first = s.trim().bytes().next();
            if matches!(first, Some(b'4'..=b'9')) {
                normalize_regno(s).map(|c| (SubjectKind::Company, c))
            } else {
                // Report why it is not a personal code: that is what a 0–3 start looks like.
                Err(person_err)
            }
        }
    }
}

/// Reads the birth date out of an old-format code, so that profiles can know a person's age.
pub fn birth_date_from_personal_code(canonical: &str) -> Option<NaiveDate> {
    let digits = personal_code_digits(canonical.trim()).ok()?;
    if digits.starts_with(NEW_FORMAT_PREFIX) {
        return None;
    }
    check_old_format(&digits).ok()?;
    date_of(&digits).ok()
}

/// Makes a valid old-format code for tests and demos; None if the check would be 10, serial > 999 or year ∉ 1800–2099.
pub fn valid_test_personal_code(birth: NaiveDate, serial: u16) -> Option<String> {
    if serial > 999 {
        return None;
    }
    let year = birth.year();
    if !(1800..=2099).contains(&year) {
        return None;
    }
    // Every value below is bounded (year offset < 300, serial < 1000), so `% 10` digits fit a u8.
    let offset = u32::try_from(year - 1800).ok()?;
    let serial = u32::from(serial);
    let (day, month) = (birth.day(), birth.month());
    let mut digits = [
        digit(day / 10),
        digit(day),
        digit(month / 10),
        digit(month),
        digit(offset / 10),
        digit(offset),
        digit(offset / 100),
        digit(serial / 100),
        digit(serial / 10),
        digit(serial),
        0,
    ];
    digits[10] = person_check_digit(&digits)?;
    let s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    normalize_personal_code(&s).ok()
}

/// Makes a valid regno `4…` from seq for tests, demos and benchmarks; distinct for seq < 500 000 000, then it wraps.
pub fn valid_test_regno(seq: u32) -> String {
    // Layout: 4, a, eight digits of seq, check. `a` carries a little more of seq and the fix-up:
    // its weight is 1, so bumping it by one moves an impossible check digit 10 to 9.
    let low = seq % 100_000_000;
    let high = (seq / 100_000_000) % 5;
    let mut digits = [0u8; 11];
    digits[0] = 4;
    let mut rest = low;
    for slot in digits[2..10].iter_mut().rev() {
        *slot = digit(rest);
        rest /= 10;
    }
    digits[1] = digit(2 * high);
    let check = regno_check_for(&digits);
    let check = if check == 10 {
        digits[1] += 1;
        regno_check_for(&digits)
    } else {
        check
    };
    digits[10] = digit(check);
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// The last decimal digit of `n`.
fn digit(n: u32) -> u8 {
    (n % 10) as u8
}

/// The check digit that makes `digits[..10]` a valid registration number (10 means none does).
fn regno_check_for(digits: &[u8; 11]) -> u32 {
    let partial: u32 = REGNO_WEIGHTS[..10].iter().zip(&digits[..10]).map(|(w, d)| w * u32::from(*d)).sum();
    (REGNO_REMAINDER + 11 * 10 - partial % 11) % 11
}

/// Σ wᵢdᵢ over all eleven digits of a registration number.
fn regno_sum(digits: &[u8; 11]) -> u32 {
    REGNO_WEIGHTS.iter().zip(digits).map(|(w, d)| w * u32::from(*d)).sum()
}

/// Digits of `DDMMYY-NNNNN` or `DDMMYYNNNNN`.
fn personal_code_digits(s: &str) -> Result<[u8; 11], CodeError> {
    let b = s.as_bytes();
    match b.len() {
        11 => eleven_digits(s),
        12 if b[6] == b'-' => {
            let joined: Vec<u8> = b[..6].iter().chain(&b[7..]).copied().collect();
            digits_of(&joined)
        }
        12 if b.contains(&b'-') => Err(CodeError::MisplacedHyphen),
        _ => Err(CodeError::NotElevenDigits),
    }
}

/// Exactly eleven ASCII digits, nothing else.
fn eleven_digits(s: &str) -> Result<[u8; 11], CodeError> {
    digits_of(s.as_bytes())
}

/// Converts eleven ASCII digits to their values.
fn digits_of(b: &[u8]) -> Result<[u8; 11], CodeError> {
    if b.len() != 11 || !b.iter().all(u8::is_ascii_digit) {
        return Err(CodeError::NotElevenDigits);
    }
    let mut out = [0u8; 11];
    for (o, c) in out.iter_mut().zip(b) {
        *o = c - b'0';
    }
    Ok(out)
}

/// Century, date and check digit of a pre-2017 personal code.
fn check_old_format(digits: &[u8; 11]) -> Result<(), CodeError> {
    if digits[6] > 2 {
        return Err(CodeError::UnknownCentury);
    }
    date_of(digits)?;
    match person_check_digit(digits) {
        Some(c) if c == digits[10] => Ok(()),
        _ => Err(CodeError::CheckDigit),
    }
}

/// Birth date encoded in DDMMYY and the century digit.
fn date_of(digits: &[u8; 11]) -> Result<NaiveDate, CodeError> {
    let day = u32::from(digits[0] * 10 + digits[1]);
    let month = u32::from(digits[2] * 10 + digits[3]);
    let year = 1800 + 100 * i32::from(digits[6]) + i32::from(digits[4] * 10 + digits[5]);
    NaiveDate::from_ymd_opt(year, month, day).ok_or(CodeError::NotARealDate)
}

/// (1101 − Σ wᵢdᵢ) mod 11 over the first ten digits; None when that is 10, which no digit can hold.
fn person_check_digit(digits: &[u8; 11]) -> Option<u8> {
    let sum: u32 = PERSON_WEIGHTS.iter().zip(&digits[..10]).map(|(w, d)| w * u32::from(*d)).sum();
    // The sum is at most 9·55 = 495, so 1101 − sum never goes below zero.
    let check = (1101 - sum) % 11;
    u8::try_from(check).ok().filter(|c| *c < 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date")
    }

    #[test]
    fn known_good_personal_code_with_and_without_hyphen() {
        assert_eq!(normalize_personal_code("161175-19997").as_deref(), Ok("161175-19997"));
        assert_eq!(normalize_personal_code("16117519997").as_deref(), Ok("161175-19997"));
        assert_eq!(normalize_personal_code("  16117519997\n").as_deref(), Ok("161175-19997"));
        assert_eq!(birth_date_from_personal_code("161175-19997"), Some(date(1975, 11, 16)));
    }

    #[test]
    fn check_digit_mismatch_is_rejected() {
        assert_eq!(normalize_personal_code("161175-19998"), Err(CodeError::CheckDigit));
        assert_eq!(normalize_personal_code("16117519990"), Err(CodeError::CheckDigit));
    }

    #[test]
    fn thirty_first_of_february_is_not_a_date() {
        // Build the rest of the code correctly so only the date is wrong.
        // The date is checked before the check digit, so the last digit does not matter here.
        assert_eq!(normalize_personal_code("310290-12340"), Err(CodeError::NotARealDate));
        assert_eq!(normalize_personal_code("31029012340"), Err(CodeError::NotARealDate));
        assert_eq!(normalize_personal_code("001290-12340"), Err(CodeError::NotARealDate));
        assert_eq!(normalize_personal_code("011390-12340"), Err(CodeError::NotARealDate));
        // 29 February exists in 2000 (century digit 2) but not in 1900 (century digit 1).
        let leap =
            valid_test_personal_code(date(2000, 2, 29), 1).or_else(|| valid_test_personal_code(date(2000, 2, 29), 2));
        let leap = leap.expect("a serial with a usable check digit");
        assert!(normalize_personal_code(&leap).is_ok());
        let not_leap = leap.replacen("-2", "-1", 1);
        assert!(matches!(normalize_personal_code(&not_leap), Err(CodeError::NotARealDate)));
    }

    #[test]
    fn century_digit_three_in_old_format_is_unknown() {
        assert_eq!(normalize_personal_code("161175-39997"), Err(CodeError::UnknownCentury));
    }

    #[test]
    fn all_three_centuries_are_accepted() {
        for y in [1850, 1975, 2015] {
            let code = (0..1000).find_map(|n| valid_test_personal_code(date(y, 6, 15), n)).expect("some serial works");
            assert_eq!(normalize_personal_code(&code).as_deref(), Ok(code.as_str()));
            assert_eq!(birth_date_from_personal_code(&code), Some(date(y, 6, 15)));
        }
    }

    #[test]
    fn new_format_has_no_date_and_no_check_digit() {
        assert_eq!(normalize_personal_code("32123456789").as_deref(), Ok("321234-56789"));
        assert_eq!(normalize_personal_code("321234-56780").as_deref(), Ok("321234-56780"));
        assert_eq!(birth_date_from_personal_code("321234-56789"), None);
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        assert_eq!(normalize_personal_code(""), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_personal_code("1611751999"), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_personal_code("161175-1999"), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_personal_code("1611751-9997"), Err(CodeError::MisplacedHyphen));
        assert_eq!(normalize_personal_code("161175 19997"), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_personal_code("16117A-19997"), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_personal_code("１61175-19997"), Err(CodeError::NotElevenDigits));
    }

    #[test]
    fn check_digit_ten_means_no_valid_code() {
        let (birth, serial) = (1..=999u16)
            .find_map(|n| {
                let b = date(1980, 1, 1);
                valid_test_personal_code(b, n).is_none().then_some((b, n))
            })
            .expect("some serial has check 10");
        let body = format!("010180-1{serial:03}");
        for last in 0..=9 {
            let code = format!("{body}{last}");
            assert_eq!(normalize_personal_code(&code), Err(CodeError::CheckDigit), "{birth}");
        }
    }

    #[test]
    fn generated_personal_codes_validate() {
        let mut made = 0;
        for n in 0..200 {
            if let Some(code) = valid_test_personal_code(date(1990, 3, 7), n) {
                assert!(normalize_personal_code(&code).is_ok());
                made += 1;
            }
        }
        assert!(made > 150);
        assert_eq!(valid_test_personal_code(date(1990, 3, 7), 1000), None);
        assert_eq!(valid_test_personal_code(date(2100, 1, 1), 1), None);
    }

    #[test]
    fn real_registration_numbers_pass_the_checksum() {
        // Public codes of Latvian legal entities (airBaltic, Latvenergo, LMT, Sanitex,
        // Latvijas Banka, Rīgas dome) and python-stdnum's doctest number.
        for regno in
            ["40003245752", "40003032949", "50003050931", "40003166842", "90000158236", "90011524360", "40003521600"]
        {
            assert_eq!(normalize_regno(regno).as_deref(), Ok(regno));
        }
    }

    #[test]
    fn numbers_failing_the_checksum_are_rejected() {
        // The first two were offered as real examples; under the checksum they are not valid.
        assert_eq!(normalize_regno("40103166862"), Err(CodeError::RegnoChecksum));
        assert_eq!(normalize_regno("90000051127"), Err(CodeError::RegnoChecksum));
        assert_eq!(normalize_regno("40003521601"), Err(CodeError::RegnoChecksum));
    }

    #[test]
    fn regno_shape_and_prefix() {
        assert_eq!(normalize_regno("4000324575"), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_regno("400032457521"), Err(CodeError::NotElevenDigits));
        assert_eq!(normalize_regno("400032-45752"), Err(CodeError::MisplacedHyphen));
        assert_eq!(normalize_regno("16117519997"), Err(CodeError::NotARegnoPrefix));
        assert_eq!(normalize_regno(" 40003245752 ").as_deref(), Ok("40003245752"));
    }

    #[test]
    fn generated_regnos_validate_and_differ() {
        let mut seen = std::collections::HashSet::new();
        for seq in (0..5000).chain([99_999_999, 100_000_000, 499_999_999, u32::MAX]) {
            let r = valid_test_regno(seq);
            assert_eq!(r.len(), 11);
            assert!(r.starts_with('4'));
            assert_eq!(normalize_regno(&r).as_deref(), Ok(r.as_str()), "seq {seq}");
            assert!(seen.insert(r), "seq {seq} collides");
        }
    }

    #[test]
    fn subject_kind_is_detected() {
        assert_eq!(normalize_subject("16117519997"), Ok((SubjectKind::Person, "161175-19997".to_owned())));
        assert_eq!(normalize_subject("321234-56789"), Ok((SubjectKind::Person, "321234-56789".to_owned())));
        assert_eq!(normalize_subject("40003245752"), Ok((SubjectKind::Company, "40003245752".to_owned())));
        assert_eq!(normalize_subject("161175-19998"), Err(CodeError::CheckDigit));
        assert_eq!(normalize_subject("40003245753"), Err(CodeError::RegnoChecksum));
        assert_eq!(normalize_subject("x"), Err(CodeError::NotElevenDigits));
    }

    #[test]
    fn errors_do_not_echo_the_code() {
        for bad in ["161175-19998", "161175-39997", "310290-12345", "40003245753", "1611"] {
            let msg = normalize_subject(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!msg.is_empty());
            assert!(!msg.contains(bad) && !msg.contains(&bad[..4]), "{msg}");
        }
    }
}
