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

/// Positions where `phrase` (a word sequence) occurs in `ws`. A word matches in any of its
/// regular inflections ("overcharged", "overcharge", "overcharging"), and a phrase word
/// also matches two heard words that spell it together: whisper writes "overcharged" as
/// "over charge".
pub fn find(ws: &[String], phrase: &str) -> Vec<usize> {
    let p = words(phrase);
    if p.is_empty() {
        return Vec::new();
    }
    (0..ws.len()).filter(|&i| matches_at(ws, i, &p)).collect()
}

fn matches_at(ws: &[String], at: usize, p: &[String]) -> bool {
    let Some((first, rest)) = p.split_first() else {
        return true;
    };
    let Some(w) = ws.get(at) else {
        return false;
    };
    if same_word(w, first) && matches_at(ws, at + 1, rest) {
        return true;
    }
    ws.get(at + 1)
        .is_some_and(|next| same_word(&format!("{w}{next}"), first) && matches_at(ws, at + 2, rest))
}

/// The same word, or the same stem of five letters or more under a regular ending.
fn same_word(a: &str, b: &str) -> bool {
    a == b || stem(a).is_some_and(|s| Some(s) == stem(b))
}

/// A word without its regular ending ("-ing", "-ed", "-es", "-s", "-d", then a final
/// "e"), when what is left has five letters or more; short words have none.
fn stem(w: &str) -> Option<&str> {
    let base = ["ing", "ed", "es", "s", "d"]
        .iter()
        .find_map(|end| w.strip_suffix(end).filter(|b| b.len() >= 5))
        .unwrap_or(w);
    let base = base.strip_suffix('e').unwrap_or(base);
    (base.len() >= 5).then_some(base)
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
