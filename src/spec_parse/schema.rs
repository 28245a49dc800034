//! JSON Schemas of hypograph's YAML files, generated from the same serde types the parser
//! fills (schemars reads the serde attributes: renames, defaults, `deny_unknown_fields`), so
//! an editor's idea of a valid file cannot drift from the parser's. `${VAR}` interpolation is
//! added afterwards: a value that is exactly `${VAR}` takes the variable's YAML type, so
//! wherever the file takes a number, a boolean or one of a set of words, such a reference is
//! allowed too.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};

/// What `duration::parse` takes, or any string with a `${VAR}` in it.
pub const DURATION: &str = r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*(ms|s|m|h|d)?\s*$|\$\{";

/// A value that is exactly one `${VAR}`.
const VARIABLE: &str = r"^\$\{[A-Za-z0-9_]+(:-[^}]*)?\}$";

/// The draft-07 schema of `T` (the draft editors' YAML support understands best), titled.
pub fn generate<T: JsonSchema>(title: &str) -> Value {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    allow_variables(&mut value);
    if let Value::Object(root) = &mut value {
        root.insert("title".into(), title.into());
    }
    value
}

/// The schema of a clap `ValueEnum` that serde names alike (the model's enums): its names, as
/// serde writes them.
pub fn value_enum<T: clap::ValueEnum + serde::Serialize>(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": names::<T>() })
}

/// [`value_enum`], or nothing (`null`).
pub fn optional_value_enum<T: clap::ValueEnum + serde::Serialize>(
    _: &mut SchemaGenerator,
) -> Schema {
    let mut choices = names::<T>();
    choices.push(Value::Null);
    json_schema!({ "type": ["string", "null"], "enum": choices })
}

fn names<T: clap::ValueEnum + serde::Serialize>() -> Vec<Value> {
    T::value_variants()
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect()
}

/// Lets `${VAR}` stand for every number, boolean and choice in `schema`.
fn allow_variables(schema: &mut Value) {
    let Value::Object(obj) = schema else {
        return;
    };
    if is_choice(obj) {
        let mut inner = std::mem::take(obj);
        // Keep what editors show on hover at the top.
        for key in ["title", "description", "default"] {
            if let Some(v) = inner.remove(key) {
                obj.insert(key.into(), v);
            }
        }
        obj.insert(
            "anyOf".into(),
            Value::Array(vec![Value::Object(inner), variable()]),
        );
        return;
    }
    if let Some(ty) = obj.get_mut("type")
        && let Some(extended) = with_string(ty)
    {
        *ty = extended;
        obj.insert("pattern".into(), VARIABLE.into());
    }
    for key in ["properties", "definitions", "$defs", "patternProperties"] {
        if let Some(Value::Object(children)) = obj.get_mut(key) {
            children.values_mut().for_each(allow_variables);
        }
    }
    for key in [
        "items",
        "additionalProperties",
        "not",
        "anyOf",
        "oneOf",
        "allOf",
    ] {
        match obj.get_mut(key) {
            Some(Value::Array(items)) => items.iter_mut().for_each(allow_variables),
            Some(child @ Value::Object(_)) => allow_variables(child),
            _ => {}
        }
    }
}

/// One of a fixed set of values: an `enum`, a `const`, or a union of them.
fn is_choice(obj: &Map<String, Value>) -> bool {
    let fixed = |v: &Value| v.get("enum").is_some() || v.get("const").is_some();
    obj.contains_key("enum")
        || obj.contains_key("const")
        || ["oneOf", "anyOf"].iter().any(|k| {
            obj.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|items| !items.is_empty() && items.iter().all(fixed))
        })
}

/// `type` with `string` added, where it takes numbers or booleans and no strings yet.
fn with_string(ty: &Value) -> Option<Value> {
    let types: Vec<&str> = match ty {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let scalar = types
        .iter()
        .any(|t| matches!(*t, "integer" | "number" | "boolean"));
    if !scalar || types.contains(&"string") {
        return None;
    }
    let mut out: Vec<Value> = types.into_iter().map(Value::from).collect();
    out.push("string".into());
    Some(Value::Array(out))
}

fn variable() -> Value {
    serde_json::json!({
        "type": "string",
        "pattern": VARIABLE,
        "description": "`${VAR}`: the environment variable's value, with its YAML type",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_booleans_and_choices_take_variables() {
        let mut v = serde_json::json!({
            "type": "object",
            "properties": {
                "dim": { "type": "integer", "minimum": 0 },
                "budget": { "type": ["number", "null"] },
                "name": { "type": "string" },
                "kind": { "type": "string", "enum": ["a", "b"], "description": "d" },
                "list": { "type": "array", "items": { "type": "boolean" } },
            },
            "definitions": {
                "Mode": { "oneOf": [{ "const": "x" }, { "const": "y" }] },
            },
        });
        allow_variables(&mut v);
        let p = &v["properties"];
        assert_eq!(p["dim"]["type"], serde_json::json!(["integer", "string"]));
        assert_eq!(p["dim"]["pattern"], VARIABLE);
        assert_eq!(
            p["budget"]["type"],
            serde_json::json!(["number", "null", "string"])
        );
        assert_eq!(p["name"], serde_json::json!({ "type": "string" }));
        assert_eq!(p["kind"]["description"], "d");
        assert_eq!(p["kind"]["anyOf"][0]["enum"], serde_json::json!(["a", "b"]));
        assert_eq!(p["kind"]["anyOf"][1]["pattern"], VARIABLE);
        assert_eq!(
            p["list"]["items"]["type"],
            serde_json::json!(["boolean", "string"])
        );
        assert_eq!(v["definitions"]["Mode"]["anyOf"][1]["pattern"], VARIABLE);
    }
}
