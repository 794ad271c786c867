//! Masking of personal data for logs and traces.
//!
//! Operators need enough of a value to tell two records apart or match a complaint, but logs must
//! never carry a whole personal code, name or contact (DESIGN.md, quality bars).

use std::fmt;

/// Inputs this short would be revealed by their visible tail, so they are starred completely.
const MIN_REVEALABLE: usize = 4;

/// Shows only the last two characters of a code (`******-***89`) so a support person can match it.
pub fn mask_code(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    if chars.len() < MIN_REVEALABLE {
        return "*".repeat(chars.len().max(1));
    }
    let keep_from = chars.len() - 2;
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            _ if i >= keep_from => *c,
            // The hyphen is format, not data; keeping it shows which spelling arrived.
            '-' => '-',
            _ => '*',
        })
        .collect()
}

/// Keeps the first character of the mailbox and of the domain plus the TLD (`j***@e***.lv`).
pub fn mask_email(s: &str) -> String {
    let s = s.trim();
    let Some((local, domain)) = s.rsplit_once('@') else {
        return "***".to_owned();
    };
    let tld = domain.rsplit_once('.').map(|(_, tld)| tld).filter(|t| !t.is_empty());
    let mut out = first_char_stars(local);
    out.push('@');
    out.push_str(&first_char_stars(domain));
    if let Some(tld) = tld {
        out.push('.');
        out.push_str(tld);
    }
    out
}

/// Keeps `+` and the Latvian country code and the last three digits (`+371*****678`).
pub fn mask_phone(s: &str) -> String {
    let s = s.trim();
    let plus = s.starts_with('+');
    let digits: Vec<char> = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < MIN_REVEALABLE {
        return "*".repeat(digits.len().max(1));
    }
    // Other countries' code lengths vary (1–3 digits); without a table, showing none leaks nothing.
    let prefix_len = if plus && digits.starts_with(&['3', '7', '1']) && digits.len() > 6 { 3 } else { 0 };
    let keep_from = digits.len() - 3;
    let mut out = String::with_capacity(digits.len() + 1);
    if plus {
        out.push('+');
    }
    for (i, d) in digits.iter().enumerate() {
        out.push(if i < prefix_len || i >= keep_from { *d } else { '*' });
    }
    out
}

/// Keeps the first letter of a name (`J***`), enough to see that a log line is about the right person.
pub fn mask_name(s: &str) -> String {
    first_char_stars(s.trim())
}

/// First character and three stars; the length of the rest is hidden too.
fn first_char_stars(s: &str) -> String {
    let mut out: String = s.chars().take(1).collect();
    out.push_str("***");
    out
}

/// Masks every personal code or registration number (`DDMMYY-NNNNN`, or
/// eleven digits in a row) inside free text, such as a reason staff typed.
pub fn mask_codes_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = digit(i) && (i == 0 || !digit(i - 1));
        let len = if !starts {
            0
        } else if (i..i + 6).all(digit)
            && chars.get(i + 6) == Some(&'-')
            && (i + 7..i + 12).all(digit)
            && !digit(i + 12)
        {
            12
        } else if (i..i + 11).all(digit) && !digit(i + 11) {
            11
        } else {
            0
        };
        if len > 0 {
            out.push_str(&mask_code(&chars[i..i + len].iter().collect::<String>()));
            i += len;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// A code that prints masked, so it can go into `tracing` fields and `{}`/`{:?}` without leaking.
#[derive(Clone, Copy)]
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_code(self.0))
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A derived Debug would print the code itself; `?field` in tracing uses this.
        write!(f, "Masked({})", mask_code(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_show_only_the_last_two_characters() {
        assert_eq!(mask_code("161175-19989"), "******-***89");
        assert_eq!(mask_code("40003245752"), "*********52");
        assert_eq!(mask_code("16117519989"), "*********89");
        assert_eq!(mask_code("1234"), "**34");
        assert_eq!(mask_code("123"), "***");
        assert_eq!(mask_code(""), "*");
    }

    #[test]
    fn emails_keep_first_letters_and_tld() {
        assert_eq!(mask_email("janis.berzins@example.lv"), "j***@e***.lv");
        assert_eq!(mask_email("a@b.co.uk"), "a***@b***.uk");
        assert_eq!(mask_email("user@localhost"), "u***@l***");
        assert_eq!(mask_email("no-at-sign"), "***");
        assert_eq!(mask_email("@x.lv"), "***@x***.lv");
    }

    #[test]
    fn phones_keep_country_code_and_last_three_digits() {
        assert_eq!(mask_phone("+37120000678"), "+371*****678");
        assert_eq!(mask_phone("+371 2000 0678"), "+371*****678");
        assert_eq!(mask_phone("+4915112345678"), "+**********678");
        assert_eq!(mask_phone("20000678"), "*****678");
        assert_eq!(mask_phone("+12"), "**");
    }

    #[test]
    fn names_keep_the_first_letter() {
        assert_eq!(mask_name("Jānis"), "J***");
        assert_eq!(mask_name("Ēriks Bērziņš"), "Ē***");
        assert_eq!(mask_name(""), "***");
    }

    #[test]
    fn codes_inside_text_are_masked_and_other_numbers_kept() {
        assert_eq!(
            mask_codes_in("asked by 150394-11002 for 40003245752, ref 2026-11-18, tel 20000678"),
            "asked by ******-***02 for *********52, ref 2026-11-18, tel 20000678"
        );
        assert_eq!(mask_codes_in("123456789012 is too long"), "123456789012 is too long");
        assert_eq!(mask_codes_in("Bērziņš"), "Bērziņš");
    }

    #[test]
    fn masked_prints_masked_in_display_and_debug() {
        let m = Masked("161175-19997");
        assert_eq!(m.to_string(), "******-***97");
        assert_eq!(format!("{m:?}"), "Masked(******-***97)");
    }
}
