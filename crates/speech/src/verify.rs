//! Checking a short turn against the phrases it may be: the recogniser's own language
//! model scores each expected phrase (a request for a person, in every wording the policy
//! knows) against the audio it has already encoded, and the best is compared with what
//! free decoding heard. Telephone-band speech through a small model turns "Supervisor,
//! please." into "To the minor please.", yet the model itself finds "Supervisor, please."
//! nearly as likely once asked: the comparison is a likelihood ratio, a keyword
//! verifier in the classic sense, with no second pass over the audio.
//!
//! The phrases are kept as a token trie and searched depth first, best child first, with
//! branch and bound: log-probabilities only fall along a path, so a prefix already below
//! the bound can never win and is not decoded further. Each trie node visited costs one
//! decoder step (the key/value cache keeps the path), and a budget caps the steps.
//!
//! Written by hand: whisper.cpp's grammar sampling constrains a fresh decode (encoder
//! again, every vocabulary entry matched against the grammar at each step) and renormalises
//! the probabilities inside the grammar, so its scores cannot be compared with free text.

/// One decoder step: feed `token` at position `pos` (everything cached from `pos` on is
/// forgotten) and return the logits of the next token.
pub trait StepModel {
    type Error;
    fn step(&mut self, token: i32, pos: usize) -> Result<&[f32], Self::Error>;

    /// Feed the decoder's start sequence from position 0 (never empty: the
    /// start-of-transcript token at least); the logits after its last token. A model that
    /// can feed many tokens in one pass overrides this.
    fn prime(&mut self, prompt: &[i32]) -> Result<&[f32], Self::Error> {
        let (last, head) = prompt.split_last().map_or((0, &[][..]), |(l, h)| (*l, h));
        for (pos, &t) in head.iter().enumerate() {
            self.step(t, pos)?;
        }
        self.step(last, head.len())
    }
}

#[derive(Debug, Clone)]
struct Node {
    token: i32,
    children: Vec<u32>,
    /// The phrase that ends here, if one does.
    phrase: Option<u32>,
}

/// Expected phrases as token sequences sharing their prefixes.
#[derive(Debug, Clone)]
pub struct PhraseTrie {
    nodes: Vec<Node>,
    phrases: Vec<String>,
}

impl PhraseTrie {
    /// `tokenized`: each phrase with its tokens (as the model writes it, leading space
    /// included). Phrases with no tokens are skipped.
    pub fn new(tokenized: impl IntoIterator<Item = (String, Vec<i32>)>) -> Self {
        let mut trie = Self {
            nodes: vec![Node {
                token: -1,
                children: Vec::new(),
                phrase: None,
            }],
            phrases: Vec::new(),
        };
        for (text, tokens) in tokenized {
            if tokens.is_empty() {
                continue;
            }
            let mut at = 0usize;
            for &t in &tokens {
                let next = trie.nodes[at]
                    .children
                    .iter()
                    .copied()
                    .find(|&c| trie.nodes[c as usize].token == t);
                at = match next {
                    Some(c) => c as usize,
                    None => {
                        trie.nodes.push(Node {
                            token: t,
                            children: Vec::new(),
                            phrase: None,
                        });
                        let id = (trie.nodes.len() - 1) as u32;
                        trie.nodes[at].children.push(id);
                        id as usize
                    }
                };
            }
            if trie.nodes[at].phrase.is_none() {
                trie.nodes[at].phrase = Some(trie.phrases.len() as u32);
                trie.phrases.push(text);
            }
        }
        trie
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    pub fn phrase(&self, i: usize) -> &str {
        &self.phrases[i]
    }
}

/// The best phrase found and its log-probability (its tokens and end of text).
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    pub phrase: usize,
    pub logprob: f32,
    pub tokens: usize,
}

/// What a search cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    pub steps: usize,
    pub exhausted_budget: bool,
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln()
}

/// The decoder primed with its start sequence: the logits that follow it, kept so that
/// several continuations can be scored from the one prompt pass.
#[derive(Debug, Clone)]
pub struct Primed {
    logits: Vec<f32>,
    len: usize,
}

impl Primed {
    pub fn new<M: StepModel>(model: &mut M, prompt: &[i32]) -> Result<Self, M::Error> {
        Ok(Self {
            logits: model.prime(prompt)?.to_vec(),
            len: prompt.len(),
        })
    }
}

fn logprob(logits: &[f32], lse: f32, token: i32) -> f32 {
    usize::try_from(token)
        .ok()
        .and_then(|t| logits.get(t))
        .map_or(f32::NEG_INFINITY, |l| l - lse)
}

/// log P(tokens, end of text | audio) under the model, teacher forced after the prompt.
/// The model's cache must still hold the prompt (only positions after it are written).
pub fn score<M: StepModel>(
    model: &mut M,
    primed: &Primed,
    tokens: &[i32],
    eot: i32,
) -> Result<f32, M::Error> {
    let mut total = 0.0f32;
    let mut next: Option<&[f32]> = None;
    for (i, &t) in tokens.iter().enumerate() {
        let logits = next.unwrap_or(&primed.logits);
        total += logprob(logits, log_sum_exp(logits), t);
        next = Some(model.step(t, primed.len + i)?);
    }
    let logits = next.unwrap_or(&primed.logits);
    Ok(total + logprob(logits, log_sum_exp(logits), eot))
}

/// The most probable phrase of the trie scoring at least `floor`, searched within
/// `budget` decoder steps. A phrase ends with any of `ends` (end of text, or a closing
/// ".", "!", "?", after which the end of text is near certain): its ending costs the
/// log of their summed probabilities, which spares a decoder step per punctuation mark.
pub fn best_phrase<M: StepModel>(
    model: &mut M,
    trie: &PhraseTrie,
    primed: &Primed,
    ends: &[i32],
    floor: f32,
    budget: usize,
) -> Result<(Option<Best>, SearchStats), M::Error> {
    let mut search = Search {
        trie,
        ends,
        bound: floor,
        best: None,
        stats: SearchStats::default(),
        budget,
    };
    if trie.is_empty() {
        return Ok((None, search.stats));
    }
    let here = search.options(0, &primed.logits);
    search.descend(model, 0, primed.len, 0.0, 0, here)?;
    Ok((search.best, search.stats))
}

struct Search<'t> {
    trie: &'t PhraseTrie,
    ends: &'t [i32],
    bound: f32,
    best: Option<Best>,
    stats: SearchStats,
    budget: usize,
}

/// At a node: each child's log-probability (best first) and that of ending here.
struct Options {
    children: Vec<(u32, f32)>,
    end: f32,
}

impl Search<'_> {
    fn options(&self, node: usize, logits: &[f32]) -> Options {
        let lse = log_sum_exp(logits);
        let n = &self.trie.nodes[node];
        let mut children: Vec<(u32, f32)> = n
            .children
            .iter()
            .map(|&c| (c, logprob(logits, lse, self.trie.nodes[c as usize].token)))
            .collect();
        children.sort_by(|a, b| b.1.total_cmp(&a.1));
        let end = if n.phrase.is_some() {
            self.ends
                .iter()
                .map(|&t| logprob(logits, lse, t).exp())
                .sum::<f32>()
                .ln()
        } else {
            f32::NEG_INFINITY
        };
        Options { children, end }
    }

    fn descend<M: StepModel>(
        &mut self,
        model: &mut M,
        node: usize,
        pos: usize,
        acc: f32,
        depth: usize,
        here: Options,
    ) -> Result<(), M::Error> {
        if let Some(p) = self.trie.nodes[node].phrase {
            let total = acc + here.end;
            if total >= self.bound {
                self.bound = total;
                self.best = Some(Best {
                    phrase: p as usize,
                    logprob: total,
                    tokens: depth,
                });
            }
        }
        for (child, lp) in here.children {
            // Everything below costs at least this much more: prune.
            if acc + lp < self.bound {
                continue;
            }
            if self.stats.steps >= self.budget {
                self.stats.exhausted_budget = true;
                return Ok(());
            }
            self.stats.steps += 1;
            let token = self.trie.nodes[child as usize].token;
            let logits = model.step(token, pos)?;
            let next = self.options(child as usize, logits);
            self.descend(model, child as usize, pos + 1, acc + lp, depth + 1, next)?;
        }
        Ok(())
    }
}

/// A reading of the turn that says one of the phrases ([`spot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Spotted {
    pub phrase: usize,
    /// The whole reading, end of text excluded: the free tokens before the phrase, the
    /// phrase, and the decoder's own greedy continuation after it.
    pub tokens: Vec<i32>,
    pub logprob: f32,
}

/// What [`spot`] found: the free transcript's log-probability (end of text included), and
/// the likeliest reading with a phrase in it that is at most `margin` less likely.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotResult {
    pub free_logprob: f32,
    pub best: Option<Spotted>,
    pub stats: SearchStats,
}

/// Looks for a phrase inside a longer turn that free decoding heard without it: "I was
/// overcharged by $2,000" heard as "I want to return to $2,000". The free tokens are
/// teacher forced once, which gives, at each word, how likely each phrase's first token
/// was there; from the likeliest of those starts the phrase is forced and the decoder
/// goes on greedily to the end of text, so the rest of the reading realigns with the
/// audio by itself. Readings are whole transcripts, compared with the free one on the
/// same footing. Branch and bound as [`best_phrase`]: a reading whose running total falls
/// below the best so far (or below `free - margin`) is abandoned.
///
/// `word_starts[i]`: `free[i]` begins a word (a phrase is only tried there). Text tokens
/// are those below `eot`.
#[allow(clippy::too_many_arguments)]
pub fn spot<M: StepModel>(
    model: &mut M,
    primed: &Primed,
    free: &[i32],
    word_starts: &[bool],
    phrases: &[Vec<i32>],
    eot: i32,
    margin: f32,
    budget: usize,
) -> Result<SpotResult, M::Error> {
    let n = free.len();
    let mut stats = SearchStats::default();
    // Teacher force the free reading: the prefix log-probabilities, the phrases' starts.
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f32);
    let mut starts: Vec<(f32, usize, usize)> = Vec::new();
    let mut cur = primed.logits.clone();
    let free_logprob = loop {
        let i = prefix.len() - 1;
        let lse = log_sum_exp(&cur);
        if i == n {
            break prefix[n] + logprob(&cur, lse, eot);
        }
        if word_starts.get(i).copied().unwrap_or(false) {
            for (k, p) in phrases.iter().enumerate() {
                if let Some(&first) = p.first() {
                    starts.push((prefix[i] + logprob(&cur, lse, first), i, k));
                }
            }
        }
        prefix.push(prefix[i] + logprob(&cur, lse, free[i]));
        stats.steps += 1;
        cur.clear();
        cur.extend_from_slice(model.step(free[i], primed.len + i)?);
    };
    let mut bound = free_logprob - margin;
    let mut best = None;
    starts.sort_by(|a, b| b.0.total_cmp(&a.0));
    // The cache holds the free tokens at positions below `valid` (after the prompt).
    let mut valid = n;
    let cap = n + 8;
    'start: for (score, i, k) in starts {
        if score < bound {
            break;
        }
        let phrase = &phrases[k];
        for (j, &t) in free.iter().enumerate().take(i).skip(valid) {
            if stats.steps >= budget {
                stats.exhausted_budget = true;
                break 'start;
            }
            stats.steps += 1;
            model.step(t, primed.len + j)?;
        }
        // What follows is overwritten by this reading.
        valid = i;
        let mut tokens = free[..i].to_vec();
        tokens.push(phrase[0]);
        let mut acc = score;
        loop {
            if stats.steps >= budget {
                stats.exhausted_budget = true;
                break 'start;
            }
            stats.steps += 1;
            let last = tokens[tokens.len() - 1];
            let logits = model.step(last, primed.len + tokens.len() - 1)?;
            let lse = log_sum_exp(logits);
            let forced = tokens.len() - i;
            if let Some(&t) = phrase.get(forced) {
                acc += logprob(logits, lse, t);
                if acc < bound {
                    continue 'start;
                }
                tokens.push(t);
                continue;
            }
            let end = logprob(logits, lse, eot);
            let text = logits.get(..eot.max(0) as usize).unwrap_or(&[]);
            let (next, lp) = text
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or((eot, f32::NEG_INFINITY), |(t, &l)| (t as i32, l - lse));
            if end >= lp || tokens.len() >= cap {
                if acc + end >= bound {
                    bound = acc + end;
                    best = Some(Spotted {
                        phrase: k,
                        tokens,
                        logprob: acc + end,
                    });
                }
                continue 'start;
            }
            acc += lp;
            if acc < bound {
                continue 'start;
            }
            tokens.push(next);
        }
    }
    Ok(SpotResult {
        free_logprob,
        best,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bigram table over a five-token vocabulary: the next token's logits depend on the
    /// token at the previous position only (positions are tracked to check the search
    /// feeds them in order).
    struct Table {
        rows: Vec<Vec<f32>>,
        path: Vec<i32>,
        steps: usize,
    }

    impl StepModel for Table {
        type Error = ();
        fn step(&mut self, token: i32, pos: usize) -> Result<&[f32], ()> {
            assert!(
                pos <= self.path.len(),
                "position {pos} skips ahead of the cache"
            );
            self.path.truncate(pos);
            self.path.push(token);
            self.steps += 1;
            Ok(&self.rows[token as usize])
        }
    }

    const EOT: i32 = 4;

    fn table() -> Table {
        // Tokens: 0 start, 1 "a", 2 "b", 3 "c", 4 end.
        let r = |v: [f32; 5]| v.to_vec();
        Table {
            rows: vec![
                r([-9.0, 2.0, 1.0, -9.0, -9.0]),  // after start: "a" likely, "b" less
                r([-9.0, -9.0, -9.0, 2.0, 0.0]),  // after "a": "c", or end
                r([-9.0, -9.0, -9.0, -9.0, 3.0]), // after "b": end
                r([-9.0, -9.0, -9.0, -9.0, 3.0]), // after "c": end
                r([0.0; 5]),
            ],
            path: Vec::new(),
            steps: 0,
        }
    }

    fn trie(phrases: &[&[i32]]) -> PhraseTrie {
        PhraseTrie::new(phrases.iter().map(|p| (format!("{p:?}"), p.to_vec())))
    }

    #[test]
    fn the_search_finds_what_exhaustive_scoring_finds() {
        let phrases: &[&[i32]] = &[&[1], &[1, 3], &[2], &[3]];
        let t = trie(phrases);
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        let scores: Vec<f32> = phrases
            .iter()
            .map(|p| score(&mut m, &primed, p, EOT).unwrap())
            .collect();
        let want = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let (best, stats) =
            best_phrase(&mut m, &t, &primed, &[EOT], f32::NEG_INFINITY, 100).unwrap();
        let best = best.unwrap();
        assert_eq!(t.phrase(best.phrase), format!("{:?}", phrases[want.0]));
        assert!((best.logprob - want.1).abs() < 1e-4);
        assert!(!stats.exhausted_budget);
    }

    #[test]
    fn a_prefix_below_the_floor_is_never_decoded() {
        let t = trie(&[&[1, 3], &[3]]);
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        let floor = score(&mut m, &primed, &[1, 3], EOT).unwrap() - 0.01;
        m.steps = 0;
        let (best, stats) = best_phrase(&mut m, &t, &primed, &[EOT], floor, 100).unwrap();
        assert_eq!(best.map(|b| b.tokens), Some(2));
        // "a", "c": the "c" branch at the root (logit -9) is pruned undecoded.
        assert_eq!(m.steps, 2);
        assert_eq!(stats.steps, 2);
    }

    #[test]
    fn nothing_above_the_floor_is_none_and_the_budget_holds() {
        let t = trie(&[&[1, 3], &[2], &[3]]);
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        let (best, _) = best_phrase(&mut m, &t, &primed, &[EOT], 0.0, 100).unwrap();
        assert_eq!(best, None);
        let (_, stats) = best_phrase(&mut m, &t, &primed, &[EOT], f32::NEG_INFINITY, 1).unwrap();
        assert!(stats.exhausted_budget);
        assert!(stats.steps <= 1);
    }

    #[test]
    fn a_phrase_the_audio_fits_better_replaces_what_was_heard() {
        // Heard "a" (then end); "b" fits better as a whole reading.
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        let r = spot(&mut m, &primed, &[1], &[true], &[vec![2]], EOT, 0.0, 100).unwrap();
        let best = r.best.unwrap();
        assert_eq!(best.tokens, vec![2]);
        let want = score(&mut m, &primed, &[2], EOT).unwrap();
        assert!((best.logprob - want).abs() < 1e-4);
        let free = score(&mut m, &primed, &[1], EOT).unwrap();
        assert!((r.free_logprob - free).abs() < 1e-4);
    }

    #[test]
    fn after_the_phrase_the_decoder_finishes_the_reading_greedily() {
        // Heard "b"; forcing "a" is followed by the decoder's own "c", then the end.
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        let r = spot(&mut m, &primed, &[2], &[true], &[vec![1]], EOT, 5.0, 100).unwrap();
        let best = r.best.unwrap();
        assert_eq!(best.tokens, vec![1, 3]);
        let want = score(&mut m, &primed, &[1, 3], EOT).unwrap();
        assert!((best.logprob - want).abs() < 1e-4);
    }

    #[test]
    fn an_unlikely_phrase_costs_only_the_forced_pass() {
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        m.steps = 0;
        let r = spot(&mut m, &primed, &[1], &[true], &[vec![3]], EOT, 1.0, 100).unwrap();
        assert_eq!(r.best, None);
        assert_eq!(m.steps, 1);
        assert_eq!(r.stats.steps, 1);
    }

    #[test]
    fn phrases_are_tried_only_where_a_word_starts_and_the_budget_holds() {
        let mut m = table();
        let primed = Primed::new(&mut m, &[0]).unwrap();
        let r = spot(&mut m, &primed, &[1], &[false], &[vec![2]], EOT, 9.0, 100).unwrap();
        assert_eq!(r.best, None);
        let r = spot(
            &mut m,
            &primed,
            &[1, 3],
            &[true, true],
            &[vec![2]],
            EOT,
            9.0,
            2,
        )
        .unwrap();
        assert!(r.stats.exhausted_budget);
        assert!(r.stats.steps <= 2);
    }
}
