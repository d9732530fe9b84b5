//! Phrase matching in context: words, not substrings ("agent" is not in "agenda"), with
//! exclusions and negation, so "can I cancel my appointment for Tuesday and reschedule"
//! does not fire a cancellation rule while "I want to cancel my contract" does.

/// Lower-case words, apostrophes kept ("don't"), everything else a separator.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Positions where `phrase` (a word sequence) occurs in `ws`.
pub fn find(ws: &[String], phrase: &str) -> Vec<usize> {
    let p = words(phrase);
    if p.is_empty() || p.len() > ws.len() {
        return Vec::new();
    }
    (0..=ws.len() - p.len())
        .filter(|&i| ws[i..i + p.len()].iter().zip(&p).all(|(a, b)| a == b))
        .collect()
}

const NEGATIONS: &[&str] = &[
    "not", "don't", "dont", "do not", "never", "no", "doesn't", "didn't", "won't", "without",
];

/// A negation within the three words before `at` ("I don't want to cancel").
pub fn negated(ws: &[String], at: usize) -> bool {
    let from = at.saturating_sub(3);
    let window = &ws[from..at];
    NEGATIONS.iter().any(|n| !find(window, n).is_empty())
}

/// The first phrase of `phrases` said un-negated, unless an `exclude` phrase occurs within
/// `window` words of it (the same clause, roughly). Returns the phrase and its position.
pub fn match_in_context(
    ws: &[String],
    phrases: &[String],
    exclude: &[String],
    window: usize,
) -> Option<(String, usize)> {
    for phrase in phrases {
        for at in find(ws, phrase) {
            if negated(ws, at) {
                continue;
            }
            let lo = at.saturating_sub(window);
            let hi = (at + words(phrase).len() + window).min(ws.len());
            let near = &ws[lo..hi];
            if exclude.iter().any(|x| !find(near, x).is_empty()) {
                continue;
            }
            return Some((phrase.clone(), at));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn words_not_substrings() {
        let ws = words("Put it on the agenda, agent!");
        assert_eq!(find(&ws, "agent"), vec![5]);
        assert!(find(&words("my agenda"), "agent").is_empty());
    }

    #[test]
    fn cancellation_in_context() {
        let phrases = s(&["cancel"]);
        let exclude = s(&["appointment", "reschedule", "booking"]);
        let no = words("Can I cancel my appointment for Tuesday and reschedule for Wednesday?");
        assert_eq!(match_in_context(&no, &phrases, &exclude, 6), None);
        let yes = words("I want to cancel my contract");
        assert_eq!(
            match_in_context(&yes, &phrases, &exclude, 6),
            Some(("cancel".into(), 3))
        );
        let neg = words("I don't want to cancel anything");
        assert_eq!(match_in_context(&neg, &phrases, &exclude, 6), None);
    }
}
