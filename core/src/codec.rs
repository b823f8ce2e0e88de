//! Between Automerge values and JSON values, in one place.
//!
//! Baton writes strings as Automerge scalar strings, integers as `int`, reals as `f64`. It reads
//! what any automerge-repo client may write for the same JSON: collaborative text objects (the
//! JavaScript library's default for strings), `uint`, and `timestamp` (a JavaScript `Date`) as
//! integer milliseconds.

use automerge::{ObjId, ObjType, ScalarValue, hydrate, transaction::Transactable};
use serde_json::{Map, Number, Value};

/// Why an Automerge value has no JSON form Baton accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("byte strings are not used in Baton documents")]
    Bytes,
    #[error("counters are not used in Baton documents")]
    Counter,
    #[error("a value of an unknown Automerge type (code {0})")]
    Unknown(u8),
    #[error("a real number that is not finite")]
    NotFinite,
}

/// The JSON form of a hydrated Automerge value.
pub fn to_json(value: &hydrate::Value) -> Result<Value, CodecError> {
    Ok(match value {
        hydrate::Value::Scalar(s) => scalar_to_json(s)?,
        hydrate::Value::Text(t) => Value::String(String::from(t)),
        hydrate::Value::List(list) => Value::Array(
            list.iter()
                .map(|v| to_json(&v.value))
                .collect::<Result<_, _>>()?,
        ),
        hydrate::Value::Map(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter() {
                out.insert(k.clone(), to_json(&v.value)?);
            }
            Value::Object(out)
        }
    })
}

fn scalar_to_json(s: &ScalarValue) -> Result<Value, CodecError> {
    Ok(match s {
        ScalarValue::Str(s) => Value::String(s.to_string()),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Value::Number((*i).into()),
        ScalarValue::Uint(u) => Value::Number((*u).into()),
        ScalarValue::F64(f) => Value::Number(Number::from_f64(*f).ok_or(CodecError::NotFinite)?),
        ScalarValue::Boolean(b) => Value::Bool(*b),
        ScalarValue::Null => Value::Null,
        ScalarValue::Bytes(_) => return Err(CodecError::Bytes),
        ScalarValue::Counter(_) => return Err(CodecError::Counter),
        ScalarValue::Unknown { type_code, .. } => return Err(CodecError::Unknown(*type_code)),
    })
}

fn scalar(value: &Value) -> Option<ScalarValue> {
    Some(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ScalarValue::Int(i),
            (None, Some(u), _) => ScalarValue::Uint(u),
            (None, None, Some(f)) => ScalarValue::F64(f),
            (None, None, None) => ScalarValue::Null,
        },
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Write the fields of a JSON object into an Automerge map.
pub fn write_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    fields: &Map<String, Value>,
) -> Result<(), automerge::AutomergeError> {
    for (key, value) in fields {
        match value {
            Value::Object(inner) => {
                let child = tx.put_object(obj, key.as_str(), ObjType::Map)?;
                write_map(tx, &child, inner)?;
            }
            Value::Array(items) => {
                let child = tx.put_object(obj, key.as_str(), ObjType::List)?;
                write_list(tx, &child, items)?;
            }
            other => tx.put(
                obj,
                key.as_str(),
                scalar(other).unwrap_or(ScalarValue::Null),
            )?,
        }
    }
    Ok(())
}

fn write_list<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    items: &[Value],
) -> Result<(), automerge::AutomergeError> {
    for (i, value) in items.iter().enumerate() {
        match value {
            Value::Object(inner) => {
                let child = tx.insert_object(obj, i, ObjType::Map)?;
                write_map(tx, &child, inner)?;
            }
            Value::Array(inner) => {
                let child = tx.insert_object(obj, i, ObjType::List)?;
                write_list(tx, &child, inner)?;
            }
            other => tx.insert(obj, i, scalar(other).unwrap_or(ScalarValue::Null))?,
        }
    }
    Ok(())
}
