//! The layers of a configuration, merged key by key: the built-in defaults (`config/default.toml`, parsed, the one
//! place they are written), the file over them, `ORCH_SECTION__KEY` variables over the file. Every value keeps a
//! span that says which layer it came from (see [`Origin`]), so an error names the line or the variable.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, Origin};
use super::file::FileConfig;
use super::DEFAULT_TOML;

/// The file's text (empty without one) with the defaults under it and the environment over it.
pub fn layered(text: &str, source: &str, env: &[(String, String)]) -> Result<(FileConfig, Origin), ConfigError> {
    // `ORCH_ORCHESTRATION__MAX_SESSIONS=7`: `__` separates levels; `ORCH_CONFIG` and the like are not settings.
    let vars: Vec<(&str, Vec<String>, &str)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("ORCH_") && k.contains("__"))
        .map(|(k, v)| (k.as_str(), k["ORCH_".len()..].split("__").map(str::to_ascii_lowercase).collect(), v.as_str()))
        .collect();
    let origin = Origin {
        source: source.to_string(),
        text: text.to_string(),
        env: vars.iter().map(|(k, path, _)| (k.to_string(), path.join("."))).collect(),
    };
    let document = DeTable::parse(text).map_err(|e| origin.toml(&e))?;
    let span = document.span();
    let mut table = document.into_inner();
    // The defaults first, so that a variable that would make a value of theirs a table is refused by name.
    let mut defaults = DeTable::parse(DEFAULT_TOML)
        .map_err(|e| ConfigError {
            source: "config/default.toml (built in)".into(),
            line: None,
            column: None,
            key: None,
            message: e.message().trim().to_string(),
        })?
        .into_inner();
    for (_, v) in defaults.iter_mut() {
        respan(v, &(0..0));
    }
    let defaults = defaults.into_iter().map(|(k, v)| (Spanned::new(0..0, k.into_inner()), v)).collect();
    under(&mut table, defaults);
    for (i, (name, path, value)) in vars.iter().enumerate() {
        let r = origin.env_span(i);
        // The value is read as TOML (a number, a boolean, an array), else taken as a string.
        let mut value = match DeValue::parse(value) {
            Ok(v) => v,
            Err(_) => Spanned::new(0..0, DeValue::String(Cow::Borrowed(value))),
        };
        respan(&mut value, &r);
        set(&mut table, path, value, &r).map_err(|segment| ConfigError {
            source: format!("environment variable {name}"),
            line: None,
            column: None,
            key: Some(path.join(".")),
            message: format!("`{segment}` is not a table"),
        })?;
    }
    let file = FileConfig::deserialize(toml::de::Deserializer::from(Spanned::new(span, table)))
        .map_err(|e| origin.toml(&e))?;
    Ok((file, origin))
}

/// Gives a value and everything in it the span `r`.
fn respan(v: &mut Spanned<DeValue<'_>>, r: &Range<usize>) {
    let mut inner = std::mem::replace(v.get_mut(), DeValue::Boolean(false));
    match &mut inner {
        DeValue::Table(t) => {
            let old = std::mem::take(t);
            for (k, mut value) in old {
                respan(&mut value, r);
                t.insert(Spanned::new(r.clone(), k.into_inner()), value);
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                respan(item, r);
            }
        }
        _ => {}
    }
    *v = Spanned::new(r.clone(), inner);
}

/// Sets the value at a dotted path, making the tables on the way; the segment that is not a table, if one is not.
fn set<'i>(
    table: &mut DeTable<'i>,
    path: &[String],
    value: Spanned<DeValue<'i>>,
    r: &Range<usize>,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else { return Ok(()) };
    let mut cur = table;
    for segment in parents {
        if !cur.contains_key(segment.as_str()) {
            cur.insert(
                Spanned::new(r.clone(), Cow::Owned(segment.clone())),
                Spanned::new(r.clone(), DeValue::Table(DeTable::new())),
            );
        }
        cur = match cur.get_mut(segment.as_str()).map(Spanned::get_mut) {
            Some(DeValue::Table(t)) => t,
            _ => return Err(segment.clone()),
        };
    }
    cur.remove(last.as_str());
    cur.insert(Spanned::new(r.clone(), Cow::Owned(last.clone())), value);
    Ok(())
}

/// Puts `lower` under `upper`: every key `upper` lacks is taken from `lower`; tables both have are merged the same
/// way; anything else `upper` has wins.
fn under<'i>(upper: &mut DeTable<'i>, lower: DeTable<'i>) {
    for (k, v) in lower {
        match upper.get_mut(k.get_ref().as_ref()) {
            None => {
                upper.insert(k, v);
            }
            Some(u) => {
                if let (DeValue::Table(ut), DeValue::Table(lt)) = (u.get_mut(), v.into_inner()) {
                    under(ut, lt);
                }
            }
        }
    }
}
