//! SMS segmentation: which alphabet a text needs and how many segments it
//! takes. A text entirely in the GSM 03.38 default alphabet travels in 7-bit
//! septets (160 a message, 153 a segment when concatenated, since the
//! concatenation header takes the rest); anything else — Latvian diacritics
//! (ā č ē ģ ī ķ ļ ņ š ū ž), Cyrillic — forces UCS-2 (70 / 67 UTF-16 units).
//!
//! Hand-written rather than a crate: the alphabet is a fixed 137-character
//! table from the standard, and shortening needs each character's cost and the
//! rule that a character (an escape pair, a surrogate pair) is never split
//! across segments, which the small GSM crates do not expose.

/// The GSM 03.38 basic table, in code order, without the escape (0x1B).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Characters of the extension table: an escape septet plus their own.
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// The alphabet a text travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 7-bit default alphabet.
    Gsm7,
    /// UCS-2 (UTF-16 on the wire).
    Ucs2,
}

impl Encoding {
    /// Units in a single message, and in each segment of a concatenated one.
    fn capacity(self) -> (usize, usize) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }
}

/// Septets `c` takes in GSM-7, or `None` if it is not in the alphabet.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The alphabet `text` needs.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm_septets(c).is_some()) { Encoding::Gsm7 } else { Encoding::Ucs2 }
}

/// Units `c` takes in `enc` (septets, or UTF-16 code units).
fn units(c: char, enc: Encoding) -> usize {
    match enc {
        Encoding::Gsm7 => gsm_septets(c).unwrap_or(2),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// How a text would travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segmentation {
    /// The alphabet.
    pub encoding: Encoding,
    /// Septets or UTF-16 units in all.
    pub units: usize,
    /// Segments (1 for an empty text: it is still one message).
    pub segments: usize,
}

/// The alphabet, length and segment count of `text`. A character is never
/// split across segments, so a segment may hold one unit less than its room.
pub fn segment(text: &str) -> Segmentation {
    let enc = encoding(text);
    let (single, multi) = enc.capacity();
    let total: usize = text.chars().map(|c| units(c, enc)).sum();
    if total <= single {
        return Segmentation { encoding: enc, units: total, segments: 1 };
    }
    let (mut segments, mut used) = (1, 0);
    for c in text.chars() {
        let u = units(c, enc);
        if used + u > multi {
            segments += 1;
            used = 0;
        }
        used += u;
    }
    Segmentation { encoding: enc, units: total, segments }
}

/// `text` unchanged if it fits in `max_segments`, else cut at the last word
/// boundary that fits with an ellipsis after it. The ellipsis is `…` when the
/// text is UCS-2 anyway, and `...` in a GSM-7 text, where `…` would force UCS-2
/// and cost more than half the room. Returns the text and whether it was cut.
pub fn fit(text: &str, max_segments: usize) -> (String, bool) {
    let max_segments = max_segments.max(1);
    if segment(text).segments <= max_segments {
        return (text.to_string(), false);
    }
    let ellipsis = match encoding(text) {
        Encoding::Gsm7 => "...",
        Encoding::Ucs2 => "…",
    };
    let fits = |s: &str| segment(&format!("{s}{ellipsis}")).segments <= max_segments;
    // Fitting is monotone in the prefix's length, so the longest fitting prefix is a partition point.
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let n_fit = bounds.partition_point(|&b| fits(&text[..b]));
    let longest = bounds[n_fit.saturating_sub(1)];
    let head = &text[..longest];
    // Back to the last whitespace, unless the cut already falls on one or the
    // text has no break at all (one long word or link: cut it rather than send nothing).
    let at_boundary = text[longest..].starts_with(char::is_whitespace);
    let cut = if at_boundary {
        head
    } else {
        match head.rfind(char::is_whitespace) {
            Some(i) => &head[..i],
            None => head,
        }
    };
    let cut = cut.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-'));
    (format!("{cut}{ellipsis}"), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_table_has_127_characters_besides_the_escape() {
        assert_eq!(GSM_BASIC.chars().count(), 127);
        assert_eq!(GSM_EXTENSION.chars().count(), 10);
    }

    #[test]
    fn plain_ascii_is_gsm7_and_splits_at_160_and_153() {
        let s = |n: usize| "a".repeat(n);
        assert_eq!(segment(&s(160)), Segmentation { encoding: Encoding::Gsm7, units: 160, segments: 1 });
        assert_eq!(segment(&s(161)).segments, 2);
        assert_eq!(segment(&s(306)).segments, 2, "153 × 2");
        assert_eq!(segment(&s(307)).segments, 3);
        assert_eq!(segment("").segments, 1);
        assert_eq!(segment("Hello, world! @£$¥ 100%").encoding, Encoding::Gsm7);
    }

    #[test]
    fn extension_characters_count_twice_and_are_not_split() {
        let t = format!("{}€", "a".repeat(158));
        assert_eq!(segment(&t), Segmentation { encoding: Encoding::Gsm7, units: 160, segments: 1 });
        let t = format!("{}€", "a".repeat(159));
        assert_eq!(segment(&t).segments, 2, "161 septets");
        for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{0C}'] {
            assert_eq!(segment(&c.to_string()).units, 2, "{c:?}");
        }
        // 152 septets, then an escape pair that does not fit in the first segment's last septet.
        let t = format!("{}[{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(segment(&t).units, 306);
        assert_eq!(segment(&t).segments, 3, "the pair moves to the second segment, which then overflows");
    }

    #[test]
    fn latvian_diacritics_and_cyrillic_force_ucs2() {
        for c in ['ā', 'č', 'ē', 'ģ', 'ī', 'ķ', 'ļ', 'ņ', 'š', 'ū', 'ž', 'Ā', 'Ž'] {
            assert_eq!(encoding(&format!("Labdien {c}")), Encoding::Ucs2, "{c}");
        }
        assert_eq!(encoding("Поздравляем"), Encoding::Ucs2);
        // Characters some think are GSM but are not: the ellipsis, typographic quotes, ç.
        for t in ["…", "“x”", "ç"] {
            assert_eq!(encoding(t), Encoding::Ucs2, "{t}");
        }
        let lv = "Sveicam ar bērna piedzimšanu! Pieprasiet pabalstu.";
        assert_eq!(segment(lv).encoding, Encoding::Ucs2);
        let s = |n: usize| "ā".repeat(n);
        assert_eq!(segment(&s(70)).segments, 1);
        assert_eq!(segment(&s(71)).segments, 2);
        assert_eq!(segment(&s(134)).segments, 2, "67 × 2");
        assert_eq!(segment(&s(135)).segments, 3);
        let ru = "П".repeat(70);
        assert_eq!(segment(&ru).segments, 1);
        assert_eq!(segment(&format!("{ru}!")).segments, 2);
    }

    #[test]
    fn ucs2_counts_utf16_units_and_keeps_surrogate_pairs_whole() {
        assert_eq!(segment("😀").units, 2);
        assert_eq!(segment(&"😀".repeat(35)).segments, 1, "70 units");
        // 66 units then a pair: the pair goes to the next segment.
        let t = format!("{}😀{}", "ā".repeat(66), "ā".repeat(66));
        assert_eq!(segment(&t).units, 134);
        assert_eq!(segment(&t).segments, 3);
    }

    #[test]
    fn a_text_within_the_cap_is_left_alone() {
        assert_eq!(fit("Labdien!", 1), ("Labdien!".to_string(), false));
        let t = "a".repeat(459);
        assert_eq!(fit(&t, 3), (t.clone(), false));
    }

    #[test]
    fn a_latvian_text_over_the_cap_is_cut_at_a_word_with_an_ellipsis() {
        let words = "Sveicam ar bērna piedzimšanu, pieprasiet pabalstu portālā latvija.gov.lv ";
        let long = words.repeat(5);
        let (short, cut) = fit(&long, 1);
        assert!(cut);
        assert!(short.ends_with('…'), "{short}");
        assert!(segment(&short).segments <= 1, "{short}");
        let body = short.trim_end_matches('…');
        assert!(long.starts_with(body));
        assert!(long[body.len()..].starts_with(' ') || long[body.len()..].starts_with(','), "cut at a word: {short}");
        assert!(body.chars().count() > 50, "not cut needlessly short: {short}");
    }

    #[test]
    fn a_russian_text_over_the_cap_is_cut_at_a_word() {
        let long = "Поздравляем с рождением ребёнка! Пособие можно получить на портале. ".repeat(6);
        let (short, cut) = fit(&long, 2);
        assert!(cut && short.ends_with('…'));
        assert_eq!(segment(&short).segments, 2);
        assert!(long.starts_with(short.trim_end_matches('…')));
    }

    #[test]
    fn an_ascii_text_keeps_gsm7_with_three_dots() {
        let long = "Congratulations on your baby! Apply for the childbirth benefit online. ".repeat(10);
        let (short, cut) = fit(&long, 3);
        assert!(cut && short.ends_with("..."), "{short}");
        let s = segment(&short);
        assert_eq!((s.encoding, s.segments), (Encoding::Gsm7, 3));
        assert!(s.units > 400, "three GSM segments hold 459 septets: {}", s.units);
    }

    #[test]
    fn one_word_longer_than_the_cap_is_cut_inside_it() {
        let (short, cut) = fit(&"x".repeat(500), 1);
        assert!(cut);
        assert_eq!(short, format!("{}...", "x".repeat(157)));
    }
}
