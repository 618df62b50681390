//! Checks a JSON value against the subset of JSON Schema orch's own schemas use: `type` (object, array, string,
//! number, integer, boolean, null), `properties`, `required`, `additionalProperties: false`, `items`, `enum`,
//! `minimum`/`maximum`, `maxItems`/`minItems`, `maxLength`. Servers enforce schemas unevenly (llama.cpp ignores a
//! number's range), so every structured answer is checked here too.

use serde_json::Value;

/// `Ok` when `value` follows `schema`; otherwise where and why it does not.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "$")
}

fn check(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            return Err(format!("{at} is {v}, not one of {}", Value::Array(options.clone())));
        }
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else { return Ok(()) };
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => return Err(format!("{at}: the schema uses type `{other}`, which this checker does not know")),
    };
    if !ok {
        return Err(format!("{at} should be {ty}, found {v}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{at} is {n}, below its minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{at} is {n}, above its maximum {max}"));
            }
        }
    }
    if let (Some(s), Some(max)) = (v.as_str(), schema.get("maxLength").and_then(Value::as_u64)) {
        if s.chars().count() as u64 > max {
            return Err(format!("{at} is longer than {max} characters"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                return Err(format!("{at} has {} items, more than {max}", items.len()));
            }
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                return Err(format!("{at} has {} items, fewer than {min}", items.len()));
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = req.as_str() {
                if !obj.contains_key(name) {
                    return Err(format!("{at} lacks `{name}`"));
                }
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, val, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at} has `{k}`, which the schema does not allow"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Whether a text says something: not empty, not only numbers and punctuation like `1.1.1.0` (a formula such as
/// `2 + 3 = 5` says something).
pub fn says_something(s: &str) -> bool {
    !s.trim().chars().all(|c| c.is_ascii_digit() || c.is_whitespace() || ".,;:-_#()[]".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review() -> Value {
        json!({"type": "object", "additionalProperties": false, "required": ["verdict", "score", "issues"],
            "properties": {"verdict": {"type": "string", "enum": ["accept", "reject"]},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "issues": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 5}}}})
    }

    #[test]
    fn accepts_what_follows_the_schema() {
        assert_eq!(validate(&review(), &json!({"verdict": "accept", "score": 0.5, "issues": ["a"]})), Ok(()));
    }

    #[test]
    fn names_what_does_not() {
        let bad = |v: Value| validate(&review(), &v).expect_err("must fail");
        assert!(bad(json!({"verdict": "maybe", "score": 0.5, "issues": []})).contains("not one of"));
        assert!(bad(json!({"verdict": "accept", "score": 2, "issues": []})).contains("above its maximum"));
        assert!(bad(json!({"verdict": "accept", "issues": []})).contains("lacks `score`"));
        assert!(bad(json!({"verdict": "accept", "score": 1, "issues": [], "x": 1})).contains("does not allow"));
        assert!(bad(json!({"verdict": "accept", "score": 1, "issues": ["a", "b", "c"]})).contains("more than 2"));
        assert!(bad(json!({"verdict": "accept", "score": 1, "issues": ["toolong"]})).contains("$.issues[0]"));
        assert!(bad(json!([1])).contains("should be object"));
    }

    #[test]
    fn a_text_says_something_unless_it_is_only_numbers_and_punctuation() {
        assert!(says_something("a b ok") && says_something("über") && says_something("2 + 3 = 5"));
        assert!(!says_something("1, 2; 3") && !says_something("  ") && !says_something("(1.1.1.0)"));
    }
}
