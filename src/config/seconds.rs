//! Durations in the file (and in `LOGDOG_*` variables) are numbers of seconds, fractions
//! allowed, from 0 to 1e9; anything else is refused where it is read (`#[serde(with)]`).

use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

fn check(v: f64) -> Result<Duration, String> {
    if (0.0..=1e9).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{v} must be a number of seconds from 0 to 1e9"))
    }
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    check(f64::deserialize(d)?).map_err(D::Error::custom)
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(check)
            .transpose()
            .map_err(D::Error::custom)
    }
}
