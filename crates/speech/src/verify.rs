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
}
