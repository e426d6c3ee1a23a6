//! PEFT's rules for which modules an adapter targets and which rank and alpha each gets,
//! reproduced from `peft` (`check_target_module_exists`, `get_pattern_key`):
//!
//! - `exclude_modules` first: a string is a regex that must match the whole module key; a
//!   list matches a key equal to an entry or ending in `.entry`.
//! - `target_modules` as a string is a regex that must match the whole key (`all-linear` is
//!   the seven projections of a decoder layer); as a list, an entry equal to the key or a
//!   `.entry` suffix — and only then `layers_to_transform` (with `layers_pattern`) filters by
//!   the layer index.
//! - `rank_pattern` / `alpha_pattern`: the first key, in the config's order, for which
//!   `(.*\.)?(key)$` matches the module key from its start.
//!
//! Module keys look like `model.layers.3.self_attn.q_proj`.

use regex::Regex;
use serde_json::Value;

use crate::error::{Error, Result};

/// Compile a Python-style regex, or say which config field holds one Rust cannot run.
fn compile(field: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern)
        .map_err(|e| Error::config("adapter_config.json", format!("{field}: regex '{pattern}': {e}")))
}

/// How `target_modules` selects modules.
#[derive(Debug)]
enum Targets {
    /// Names (exact or as a `.name` suffix).
    List(Vec<String>),
    /// A regex over the whole key.
    Regex(Regex),
    /// Every linear projection of the decoder layers.
    AllLinear,
}

/// `exclude_modules`.
#[derive(Debug)]
enum Exclude {
    None,
    List(Vec<String>),
    Regex(Regex),
}

fn strings(field: &str, v: &Value) -> Result<Vec<String>> {
    v.as_array()
        .ok_or_else(|| {
            Error::config("adapter_config.json", format!("{field} must be a string or a list of strings"))
        })?
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::config("adapter_config.json", format!("{field} holds a non-string")))
        })
        .collect()
}

/// The targeting rules of one adapter config.
#[derive(Debug)]
pub struct TargetRules {
    targets: Targets,
    exclude: Exclude,
    layers: Option<Vec<usize>>,
    layers_pattern: Vec<String>,
}

fn ends_with_dotted(key: &str, name: &str) -> bool {
    key == name
        || (key.len() > name.len()
            && key.ends_with(name)
            && key.as_bytes()[key.len() - name.len() - 1] == b'.')
}

impl TargetRules {
    /// Rules from the raw config values (`None` = field absent or null).
    pub fn new(
        target_modules: Option<&Value>,
        exclude_modules: Option<&Value>,
        layers_to_transform: Option<&Value>,
        layers_pattern: Option<&Value>,
    ) -> Result<TargetRules> {
        let targets = match target_modules {
            None | Some(Value::Null) => Targets::AllLinear,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("all-linear") => Targets::AllLinear,
            Some(Value::String(s)) => Targets::Regex(compile("target_modules", &format!("^(?:{s})$"))?),
            Some(v) => Targets::List(strings("target_modules", v)?),
        };
        let exclude = match exclude_modules {
            None | Some(Value::Null) => Exclude::None,
            Some(Value::String(s)) => Exclude::Regex(compile("exclude_modules", &format!("^(?:{s})$"))?),
            Some(v) => Exclude::List(strings("exclude_modules", v)?),
        };
        let layers = match layers_to_transform {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(vec![n.as_u64().unwrap_or(u64::MAX) as usize]),
            Some(Value::Array(a)) if a.is_empty() => None,
            Some(Value::Array(a)) => Some(
                a.iter().map(|x| x.as_u64().map(|v| v as usize)).collect::<Option<Vec<_>>>().ok_or_else(
                    || Error::config("adapter_config.json", "layers_to_transform must hold integers"),
                )?,
            ),
            Some(_) => {
                return Err(Error::config(
                    "adapter_config.json",
                    "layers_to_transform must be an integer or a list",
                ))
            }
        };
        let layers_pattern = match layers_pattern {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(v) => strings("layers_pattern", v)?,
        };
        for p in &layers_pattern {
            compile("layers_pattern", p)?;
        }
        Ok(TargetRules { targets, exclude, layers, layers_pattern })
    }

    /// Does the config put a LoRA on the module with this key?
    pub fn targets(&self, key: &str) -> bool {
        let excluded = match &self.exclude {
            Exclude::None => false,
            Exclude::Regex(r) => r.is_match(key),
            Exclude::List(l) => l.iter().any(|e| ends_with_dotted(key, e)),
        };
        if excluded {
            return false;
        }
        match &self.targets {
            Targets::AllLinear => {
                const LINEAR: [&str; 7] =
                    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
                LINEAR.iter().any(|m| ends_with_dotted(key, m)) && self.layer_ok(key)
            }
            Targets::Regex(r) => r.is_match(key),
            Targets::List(l) => l.iter().any(|t| ends_with_dotted(key, t)) && self.layer_ok(key),
        }
    }

    /// The `layers_to_transform` filter (PEFT applies it to list targets only).
    fn layer_ok(&self, key: &str) -> bool {
        let Some(layers) = &self.layers else { return true };
        let index = if self.layers_pattern.is_empty() {
            Regex::new(r"^.*?\.[^.]*\.(\d+)\.").ok().and_then(|r| r.captures(key))
        } else {
            self.layers_pattern.iter().find_map(|p| {
                Regex::new(&format!(r"^(?:.*?\.)?{p}\.(\d+)\.")).ok().and_then(|r| r.captures(key))
            })
        };
        index.and_then(|c| c[1].parse::<usize>().ok()).is_some_and(|i| layers.contains(&i))
    }
}

/// `rank_pattern` or `alpha_pattern`: keys in config order with their compiled matchers.
#[derive(Debug)]
pub struct PatternMap<T> {
    entries: Vec<(Regex, T)>,
}

impl<T: Copy> PatternMap<T> {
    /// Compile a JSON object of pattern → value (`parse` reads one value).
    pub fn new(field: &str, v: Option<&Value>, parse: impl Fn(&Value) -> Option<T>) -> Result<PatternMap<T>> {
        let mut entries = Vec::new();
        if let Some(Value::Object(m)) = v {
            for (k, val) in m {
                let t = parse(val).ok_or_else(|| {
                    Error::config("adapter_config.json", format!("{field}['{k}'] is not a valid value"))
                })?;
                entries.push((compile(field, &format!(r"^(?:.*\.)?(?:{k})$"))?, t));
            }
        }
        Ok(PatternMap { entries })
    }

    /// The value of the first key matching the module `key`.
    pub fn get(&self, key: &str) -> Option<T> {
        self.entries.iter().find(|(r, _)| r.is_match(key)).map(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(t: Value, ex: Value, layers: Value, pat: Value) -> TargetRules {
        TargetRules::new(Some(&t), Some(&ex), Some(&layers), Some(&pat)).unwrap()
    }

    const Q0: &str = "model.layers.0.self_attn.q_proj";
    const Q1: &str = "model.layers.1.self_attn.q_proj";
    const D1: &str = "model.layers.1.mlp.down_proj";

    #[test]
    fn list_targets_match_by_dotted_suffix_and_layer() {
        let r = rules(json!(["q_proj"]), Value::Null, Value::Null, Value::Null);
        assert!(r.targets(Q0) && !r.targets(D1));
        assert!(!rules(json!(["_proj"]), Value::Null, Value::Null, Value::Null).targets(Q0));
        let r = rules(json!(["q_proj", "down_proj"]), Value::Null, json!([1]), json!("layers"));
        assert!(!r.targets(Q0) && r.targets(Q1) && r.targets(D1));
        let r = rules(json!(["q_proj"]), Value::Null, json!(0), Value::Null);
        assert!(r.targets(Q0) && !r.targets(Q1));
    }

    #[test]
    fn regex_targets_match_the_whole_key_and_ignore_layers() {
        let r = rules(json!(r".*\.(q_proj|up_proj)"), Value::Null, json!([1]), Value::Null);
        assert!(r.targets(Q0) && r.targets(Q1) && !r.targets(D1));
        assert!(!rules(json!("q_proj"), Value::Null, Value::Null, Value::Null).targets(Q0));
    }

    #[test]
    fn exclusions_and_all_linear() {
        let r = rules(json!("all-linear"), json!(["down_proj"]), Value::Null, Value::Null);
        assert!(r.targets(Q0) && !r.targets(D1));
        let r = rules(json!("all-linear"), json!(r".*layers\.1\..*"), Value::Null, Value::Null);
        assert!(r.targets(Q0) && !r.targets(Q1));
        assert!(TargetRules::new(Some(&json!("(")), None, None, None).is_err());
    }

    #[test]
    fn patterns_take_the_first_match_in_config_order() {
        let v = json!({"q_proj": 8, "model.layers.1.mlp.down_proj": 2, "^model.layers.0.self_attn.o_proj": 3, "proj": 99});
        let p = PatternMap::new("rank_pattern", Some(&v), |x| x.as_u64().map(|r| r as usize)).unwrap();
        assert_eq!(p.get(Q1), Some(8));
        assert_eq!(p.get(D1), Some(2));
        assert_eq!(p.get("model.layers.0.self_attn.o_proj"), Some(3));
        assert_eq!(p.get("model.layers.1.self_attn.o_proj"), None, "'^' anchors at the start");
        assert_eq!(p.get("model.layers.1.self_attn.k_proj"), None, "'proj' must match a whole dotted tail");
    }
}
