//! [`GgufMetadata`] for the model loader's [`GgufFile`], so the tokenizer reads its vocabulary
//! from the same parsed file.

use super::gguf::{GgufFile, Value};
use crate::error::{Error, Result};
use crate::tokenizer::GgufMetadata;

fn wrong(g: &GgufFile, key: &str, want: &str) -> Error {
    Error::format(g.path(), format!("metadata '{key}' is not {want}"))
}

impl GgufMetadata for GgufFile {
    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(self, key, "a string")),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| wrong(self, key, "an unsigned integer")),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong(self, key, "a boolean")),
        }
    }

    fn string_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let arr = v.as_array().ok_or_else(|| wrong(self, key, "an array"))?;
        arr.iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| wrong(self, key, "an array of strings")))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let arr = v.as_array().ok_or_else(|| wrong(self, key, "an array"))?;
        arr.iter()
            .map(|x| x.as_f64().map(|f| f as f32).ok_or_else(|| wrong(self, key, "an array of numbers")))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let arr = v.as_array().ok_or_else(|| wrong(self, key, "an array"))?;
        arr.iter()
            .map(|x| {
                match x {
                    Value::I64(i) => i32::try_from(*i).ok(),
                    Value::U64(u) => i32::try_from(*u).ok(),
                    _ => None,
                }
                .ok_or_else(|| wrong(self, key, "an array of 32-bit integers"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
