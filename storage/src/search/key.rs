//! Search keys: how a name and a query become comparable strings. Pure functions, no I/O.
//!
//! - [`fold`]: NFKC, lower case (with the few full case folds `to_lowercase` lacks), `ё` → `е`,
//!   apostrophes dropped, every other run of characters that are neither letters nor digits
//!   (spaces, `_`, `.`, `-`) made one space. Script and diacritics stay: the key tiers
//!   (exact, prefix, typo) compare these.
//! - [`skeleton`]: a folded key written in Latin letters with the usual spelling variants of
//!   Russian names collapsed, so that `Пётр`, `petr` and `pyotr` share `petr`, and `ёлкин` and
//!   `elkin` share `elkin`. The transliteration tier compares these.
//! - [`profile_terms`]: the strings a profile is found by (whole fields, their words, and the
//!   tails that start at a later word), each flagged with the tiers it may match in.

use std::collections::BTreeMap;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The term is a folded key: exact (when also [`WHOLE`]), prefix and typo matches.
pub(crate) const KEY: i16 = 1;
/// The term is a whole field (the username or the display name), not a part of one.
pub(crate) const WHOLE: i16 = 2;
/// The term is a skeleton: transliteration matches.
pub(crate) const SKEL: i16 = 4;

/// At most this many words of one field are indexed one by one (a display name has at most
/// 64 characters; the rest of a longer name is still in its whole-field term).
const MAX_WORDS: usize = 12;

/// One string a profile is found by, and which tiers it counts in ([`KEY`], [`WHOLE`],
/// [`SKEL`], OR-ed: the same string can be a key of one field and the skeleton of another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Term {
    pub text: String,
    pub flags: i16,
}

/// The matching form of a name or a query (see the module doc). Empty when `s` has no letter
/// or digit.
pub(crate) fn fold(s: &str) -> String {
    if s.is_ascii() {
        fold_ascii(s)
    } else {
        fold_any(s)
    }
}

/// [`fold`] of ASCII text, which NFKC leaves as it is (a search folds every name it meets).
fn fold_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if matches!(c, '\'' | '`') {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn fold_any(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfkc() {
        if matches!(c, '\'' | '’' | 'ʼ' | '`' | '´') {
            continue;
        }
        if !(c.is_alphanumeric() || (is_combining_mark(c) && !out.is_empty())) {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        for l in c.to_lowercase() {
            match l {
                'ё' => out.push('е'),
                'ß' => out.push_str("ss"),
                'ς' => out.push('σ'),
                _ => out.push(l),
            }
        }
    }
    // NOTE: lower-casing can undo NFKC composition (`İ` → `i` + U+0307); compose again.
    out.nfkc().collect()
}

/// The Latin skeleton of a folded key (see the module doc): Cyrillic letters by one
/// GOST/BGN-like table, Latin diacritics dropped, then the variants `yo`/`ye` → `e`,
/// `j`/`y` → `i`, `kh` → `h`, `ts`/`tz` → `c`, `shch` → `sch`, `x` → `ks`, `w` → `v`, and a
/// doubled letter made single (`ii`, `nn`).
pub(crate) fn skeleton(folded: &str) -> String {
    let mut latin = String::with_capacity(folded.len() + 8);
    for c in folded.chars() {
        if let Some(s) = cyrillic_to_latin(c) {
            latin.push_str(s);
            continue;
        }
        match c {
            'ł' => latin.push('l'),
            'ø' => latin.push('o'),
            'đ' => latin.push('d'),
            'æ' => latin.push_str("ae"),
            'œ' => latin.push_str("oe"),
            'ı' => latin.push('i'),
            _ => latin.extend(c.nfd().filter(|d| !is_combining_mark(*d))),
        }
    }
    // NOTE: order matters: `j` becomes `y` before `yo`/`ye` collapse, and `y` becomes `i`
    // last, so `julia`, `yulia`, `iuliia` and `юлия` all end as `iulia`.
    let mut s = latin;
    for (from, to) in [
        ("shch", "sch"),
        ("kh", "h"),
        ("ts", "c"),
        ("tz", "c"),
        ("x", "ks"),
        ("w", "v"),
        ("j", "y"),
        ("yo", "e"),
        ("ye", "e"),
        ("y", "i"),
    ] {
        // Most names hold few of these: no new string for the others.
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    let mut prev = None;
    s.retain(|c| {
        let keep = !(c.is_alphabetic() && prev == Some(c));
        prev = Some(c);
        keep
    });
    s
}

/// Russian (and the Ukrainian/Belarusian extra letters) in Latin letters, one spelling each;
/// [`skeleton`] then folds the other usual spellings onto the same string.
fn cyrillic_to_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' | 'ґ' => "g",
        'д' => "d",
        'е' | 'ё' | 'э' => "e",
        'є' => "ye",
        'ж' => "zh",
        'з' => "z",
        'и' | 'і' => "i",
        'ї' => "yi",
        'й' => "y",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' | 'ў' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ъ' | 'ь' => "",
        'ы' => "y",
        'ю' => "yu",
        'я' => "ya",
        _ => return None,
    })
}

/// The terms of one folded field: the whole key, each word, and each tail that starts at a
/// later word (so `иванов п` finds `пётр иванов петрович` by its tail `иванов петрович`).
fn field_terms(folded: &str, into: &mut BTreeMap<String, i16>) {
    field_keys(folded, |text, flags| {
        *into.entry(text.to_owned()).or_insert(0) |= flags | KEY;
        *into.entry(skeleton(text)).or_insert(0) |= SKEL;
    });
}

/// The keys of one folded field, as [`field_terms`] finds them: `add(key, WHOLE or 0)`.
fn field_keys(folded: &str, mut add: impl FnMut(&str, i16)) {
    if folded.is_empty() {
        return;
    }
    add(folded, WHOLE);
    let starts: Vec<usize> = std::iter::once(0)
        .chain(folded.match_indices(' ').map(|(i, _)| i + 1))
        .take(MAX_WORDS)
        .collect();
    if starts.len() > 1 {
        for (n, &start) in starts.iter().enumerate() {
            let end = folded[start..]
                .find(' ')
                .map_or(folded.len(), |e| start + e);
            add(&folded[start..end], 0);
            if n > 0 {
                add(&folded[start..], 0);
            }
        }
    }
}

/// Every term a profile is found by, once each, sorted by text.
pub(crate) fn profile_terms(username: Option<&str>, display_name: Option<&str>) -> Vec<Term> {
    let mut terms = BTreeMap::new();
    for field in [username, display_name].into_iter().flatten() {
        field_terms(&fold(field), &mut terms);
    }
    terms.remove("");
    terms
        .into_iter()
        .map(|(text, flags)| Term { text, flags })
        .collect()
}

/// The terms of [`profile_terms`] that are keys, with their flags but [`SKEL`] (the
/// skeletons are those of these keys: [`skeleton`] of each), by text.
pub(crate) fn profile_keys(
    username: Option<&str>,
    display_name: Option<&str>,
) -> BTreeMap<String, i16> {
    let mut keys = BTreeMap::new();
    for field in [username, display_name].into_iter().flatten() {
        field_keys(&fold(field), |text, flags| {
            *keys.entry(text.to_owned()).or_insert(0) |= flags | KEY;
        });
    }
    keys
}

/// How many typos (edits) a folded query of `chars` characters may carry: none below 5, one
/// up to 8, two from 9 (Meilisearch's defaults: shorter queries with typos match too much).
pub(crate) fn typo_budget(chars: usize) -> usize {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Edits between two keys: insertions, deletions, substitutions and swaps of two neighbours
/// (optimal string alignment), counted in characters.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn terms(username: Option<&str>, display: Option<&str>) -> Vec<(String, i16)> {
        profile_terms(username, display)
            .into_iter()
            .map(|t| (t.text, t.flags))
            .collect()
    }

    #[test]
    fn ascii_text_folds_the_same_by_the_short_way() {
        let printable: String = (' '..='~').collect();
        let mut samples = vec![
            printable.clone(),
            printable.chars().rev().collect(),
            "  Ivan_Petrov-87 ".into(),
            "O'Brien `x`".into(),
            "___".into(),
            String::new(),
        ];
        samples.extend(printable.chars().map(|c| format!("a{c}B{c}{c}9")));
        for s in samples {
            assert_eq!(fold_ascii(&s), fold_any(&s), "{s:?}");
        }
    }

    #[test]
    fn a_profiles_keys_and_their_skeletons_are_its_terms() {
        let names = [
            (Some("ivan_petrov87"), Some("Пётр Иванов Петрович")),
            (Some("kate"), Some("Kate")),
            (None, Some("Ъ Юлия-Анна")),
            (Some("x.y.z"), None),
        ];
        for (username, display) in names {
            let mut expected: BTreeMap<String, i16> = BTreeMap::new();
            for (text, flags) in profile_keys(username, display) {
                *expected.entry(skeleton(&text)).or_insert(0) |= SKEL;
                *expected.entry(text).or_insert(0) |= flags;
            }
            expected.remove("");
            assert_eq!(
                terms(username, display),
                expected.into_iter().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn folding_ignores_case_yo_width_and_separators() {
        assert_eq!(fold("Пётр  ИВАНОВ"), "петр иванов");
        assert_eq!(fold("ЁЛКИН"), "елкин");
        assert_eq!(fold("Ivan_Petrov-87"), "ivan petrov 87");
        assert_eq!(fold("  .kate. "), "kate");
        assert_eq!(fold("Ｋａｔｅ"), "kate");
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Йога"), "йога");
        assert_eq!(fold("José"), "josé");
        assert_eq!(fold("e\u{301}"), "é");
        assert_eq!(fold("___"), "");
    }

    #[test]
    fn cyrillic_and_the_usual_latin_spellings_share_a_skeleton() {
        let same = [
            ("пётр", &["petr", "pyotr"][..]),
            ("фёдор", &["fedor", "fyodor"]),
            ("ёлкин", &["elkin", "yolkin"]),
            ("алексей", &["aleksei", "alexey", "aleksey", "alexei"]),
            ("юлия", &["julia", "yulia", "iuliia", "yuliya"]),
            ("наталья", &["natalia", "natalya", "nataliya"]),
            ("евгений", &["evgeny", "yevgeny", "evgenii", "evgeniy"]),
            ("хабиб", &["khabib", "habib"]),
            ("цой", &["tsoi", "tsoy", "coi"]),
            ("щукин", &["shchukin", "schukin"]),
            ("ксения", &["xenia", "kseniya", "ksenia"]),
            ("андреев", &["andreev", "andreyev"]),
            ("ольга", &["olga"]),
            ("анна", &["anna", "ana"]),
            ("дмитрий", &["dmitry", "dmitriy", "dmitrii"]),
        ];
        for (cyrillic, latin) in same {
            let want = skeleton(&fold(cyrillic));
            for l in latin {
                assert_eq!(skeleton(&fold(l)), want, "{l} vs {cyrillic}");
            }
        }
        assert_eq!(skeleton("петр"), "petr");
        assert_eq!(skeleton("josé 2001"), skeleton("jose 2001"));
        assert_eq!(skeleton("kate 2001"), "kate 2001");
        assert_ne!(skeleton("иван"), skeleton("ivanov"));
    }

    #[test]
    fn a_profile_is_found_by_its_fields_their_words_and_later_tails() {
        let t = terms(Some("ivan_petrov"), Some("Пётр Иванов"));
        let keys: Vec<&str> = t
            .iter()
            .filter(|(_, f)| f & KEY != 0)
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "ivan",
                "ivan petrov",
                "petrov",
                "иванов",
                "петр",
                "петр иванов"
            ]
        );
        let whole: Vec<&str> = t
            .iter()
            .filter(|(_, f)| f & WHOLE != 0)
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(whole, ["ivan petrov", "петр иванов"]);
        let skel: Vec<&str> = t
            .iter()
            .filter(|(_, f)| f & SKEL != 0)
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(
            skel,
            [
                "ivan",
                "ivan petrov",
                "ivanov",
                "petr",
                "petr ivanov",
                "petrov"
            ]
        );
        assert!(terms(None, Some("  ")).is_empty());
    }

    #[test]
    fn longer_queries_may_carry_more_typos() {
        assert_eq!(typo_budget(4), 0);
        assert_eq!(typo_budget(5), 1);
        assert_eq!(typo_budget(8), 1);
        assert_eq!(typo_budget(9), 2);
        assert_eq!(distance("иванов", "ивонов"), 1);
        assert_eq!(distance("ivanov", "iavnov"), 1);
        assert_eq!(distance("aleksandrov", "alksandrv"), 2);
    }

    /// Every string `edits` insertions, deletions, substitutions or swaps away from `q`, over
    /// the query's own letters and one more.
    fn neighbours(q: &str, edits: usize) -> std::collections::BTreeSet<String> {
        let mut alphabet: Vec<char> = q.chars().collect();
        alphabet.push('x');
        alphabet.sort_unstable();
        alphabet.dedup();
        let mut all = std::collections::BTreeSet::from([q.to_owned()]);
        for _ in 0..edits {
            let mut next = all.clone();
            for s in &all {
                let c: Vec<char> = s.chars().collect();
                for i in 0..=c.len() {
                    for &a in &alphabet {
                        let mut v = c.clone();
                        v.insert(i, a);
                        next.insert(v.into_iter().collect());
                        if i < c.len() {
                            let mut v = c.clone();
                            v[i] = a;
                            next.insert(v.into_iter().collect());
                        }
                    }
                    if i < c.len() {
                        let mut v = c.clone();
                        v.remove(i);
                        next.insert(v.into_iter().collect());
                    }
                    if i + 1 < c.len() {
                        let mut v = c.clone();
                        v.swap(i, i + 1);
                        next.insert(v.into_iter().collect());
                    }
                }
            }
            all = next;
        }
        all
    }

    #[test]
    fn the_typo_index_finds_every_key_within_budget_and_nothing_further() {
        use super::super::typo::within;
        for (q, budget) in [
            ("aleksandrov", 2),
            ("petrovich", 2),
            ("ivonov", 1),
            ("kate1", 1),
            ("пётр иванов", 2),
            ("ab cd ef", 1),
            // Even lengths: the halves are as long.
            ("kuznetsova", 2),
            ("иванова", 1),
            ("смирнова", 1),
            // Repeated letters, where one key aligns with the query in many ways.
            ("анна-мария", 2),
            ("lllooolll", 2),
            ("abab", 1),
            // 63 characters, the longest a walk takes, and 64, one automaton.
            (
                "abcdefghijklmnopqrstuvwxyzабвгдежзийклмнопрстуфхцчшщ0123456789a",
                1,
            ),
            (
                "abcdefghijklmnopqrstuvwxyzабвгдежзийклмнопрстуфхцчшщ0123456789ab",
                1,
            ),
        ] {
            let q = fold(q);
            // With keys one edit further (one more letter or one less), out of reach.
            let mut all = neighbours(&q, budget);
            let further: Vec<String> = all
                .iter()
                .flat_map(|t| [format!("{t}x"), t.chars().skip(1).collect()])
                .collect();
            all.extend(further);
            let set = fst::Set::from_iter(all.iter()).unwrap();
            // With the edits the typo tier counts for each key.
            let found: std::collections::BTreeSet<(u8, String)> =
                within(&set, &q, budget).into_iter().collect();
            let expected: std::collections::BTreeSet<(u8, String)> = all
                .iter()
                .map(|t| (u8::try_from(distance(&q, t)).unwrap(), t.clone()))
                .filter(|(d, _)| usize::from(*d) <= budget)
                .collect();
            let missed: Vec<&(u8, String)> = expected.difference(&found).collect();
            let extra: Vec<&(u8, String)> = found.difference(&expected).collect();
            assert!(
                missed.is_empty() && extra.is_empty(),
                "{q}: missed {missed:?}, extra {extra:?}"
            );
        }
    }
}
