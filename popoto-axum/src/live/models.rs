//! The models a live-sync endpoint serves, behind function pointers: JSON in and out, and
//! the calls each message makes on the tenant's session.

use std::future::Future;
use std::pin::Pin;

use popoto_core::feed::ChangeEvent;
use popoto_core::shared::{Access, Patch, Replica, Shareable, SharedId};
use popoto_core::{Error, Key, Model, Session};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// A boxed future of a session call.
pub(crate) type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Instance keys and values as JSON.
pub(crate) type Rows = Vec<(String, Value)>;

/// A shared instance as JSON, its version and the reader's access.
pub(crate) type SharedRead = (Value, u64, Option<Access>);

/// A private model: snapshot (key, JSON), save, delete, and an event's fields as JSON.
pub(crate) struct PrivateModel {
    pub(crate) name: &'static str,
    pub(crate) snapshot: for<'a> fn(&'a Session) -> Fut<'a, Rows>,
    pub(crate) save: for<'a> fn(&'a Session, Value) -> Fut<'a, ()>,
    pub(crate) delete: for<'a> fn(&'a Session, &'a str) -> Fut<'a, bool>,
    pub(crate) fields: fn(&ChangeEvent) -> Result<Map<String, Value>, Error>,
}

/// A shared model: read (JSON, version, access), patch from JSON fields, an event's fields.
pub(crate) struct SharedModel {
    pub(crate) name: &'static str,
    #[allow(clippy::type_complexity)]
    pub(crate) get:
        for<'a> fn(&'a Session, &'a SharedId, &'a Replica) -> Fut<'a, (Value, u64, Option<Access>)>,
    pub(crate) patch:
        for<'a> fn(&'a Session, &'a SharedId, Map<String, Value>, &'a Replica) -> Fut<'a, u64>,
    pub(crate) fields: fn(&ChangeEvent) -> Result<Map<String, Value>, Error>,
}

/// The models of an endpoint.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) private: Vec<PrivateModel>,
    pub(crate) shared: Vec<SharedModel>,
}

impl Registry {
    pub(crate) fn add_private<M: Model + Serialize + DeserializeOwned + Default>(&mut self) {
        self.private.push(PrivateModel {
            name: M::META.name,
            snapshot: snapshot::<M>,
            save: save::<M>,
            delete: delete::<M>,
            fields: fields::<M>,
        });
    }

    pub(crate) fn add_shared<M: Shareable + Serialize + DeserializeOwned + Default>(&mut self) {
        self.shared.push(SharedModel {
            name: M::META.name,
            get: get::<M>,
            patch: patch::<M>,
            fields: fields::<M>,
        });
    }

    pub(crate) fn private(&self, name: &str) -> Option<&PrivateModel> {
        self.private.iter().find(|m| m.name == name)
    }

    pub(crate) fn shared(&self, name: &str) -> Option<&SharedModel> {
        self.shared.iter().find(|m| m.name == name)
    }
}

fn json_error<M: Model>(e: serde_json::Error) -> Error {
    Error::InvalidValue {
        model: M::META.name,
        field: "<json>",
        reason: e.to_string(),
    }
}

fn to_json<M: Model + Serialize>(value: &M) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(json_error::<M>)
}

/// A value of `M` from JSON fields over the default value.
fn from_fields<M: Model + Serialize + DeserializeOwned + Default>(
    fields: &Map<String, Value>,
) -> Result<M, Error> {
    let mut base = to_json(&M::default())?;
    let Some(object) = base.as_object_mut() else {
        return Err(Error::InvalidValue {
            model: M::META.name,
            field: "<json>",
            reason: "the model does not serialize as a JSON object".into(),
        });
    };
    for (k, v) in fields {
        object.insert(k.clone(), v.clone());
    }
    serde_json::from_value(base).map_err(json_error::<M>)
}

fn snapshot<M: Model + Serialize>(s: &Session) -> Fut<'_, Rows> {
    Box::pin(async move {
        let rows = s.query::<M>().fetch_keyed().await?;
        rows.into_iter()
            .map(|(k, v)| Ok((k.redis_key(), to_json(&v)?)))
            .collect()
    })
}

fn save<M: Model + Serialize + DeserializeOwned + Default>(s: &Session, v: Value) -> Fut<'_, ()> {
    Box::pin(async move {
        let Value::Object(fields) = v else {
            return Err(Error::InvalidValue {
                model: M::META.name,
                field: "<json>",
                reason: "a value is a JSON object".into(),
            });
        };
        let value: M = from_fields(&fields)?;
        s.save(&value).await
    })
}

fn delete<'a, M: Model>(s: &'a Session, key: &'a str) -> Fut<'a, bool> {
    Box::pin(async move {
        let key = Key::<M>::parse(key)?;
        s.delete_key(&key).await
    })
}

/// The fields an event wrote, as JSON (all of them for a full value).
fn fields<M: Model + Serialize + Default>(e: &ChangeEvent) -> Result<Map<String, Value>, Error> {
    let value = if e.full {
        e.value::<M>()?
    } else {
        e.apply_to(&M::default())?
    };
    let Value::Object(mut all) = to_json(&value)? else {
        return Ok(Map::new());
    };
    if !e.full {
        all.retain(|k, _| e.fields.iter().any(|(f, _)| f == k));
    }
    Ok(all)
}

fn get<'a, M: Shareable + Serialize>(
    s: &'a Session,
    id: &'a SharedId,
    replica: &'a Replica,
) -> Fut<'a, SharedRead> {
    Box::pin(async move {
        let shared = s.shared::<M>().replica(replica.clone()).get(id).await?;
        Ok((to_json(&shared.value)?, shared.version, shared.access))
    })
}

fn patch<'a, M: Shareable + Serialize + DeserializeOwned + Default>(
    s: &'a Session,
    id: &'a SharedId,
    fields: Map<String, Value>,
    replica: &'a Replica,
) -> Fut<'a, u64> {
    Box::pin(async move {
        let value: M = from_fields(&fields)?;
        let mut p = Patch::of(&value)?;
        for name in fields.keys() {
            p = p.with_name(name)?;
        }
        let written = s
            .shared::<M>()
            .replica(replica.clone())
            .patch(id, &p)
            .await?;
        Ok(written.version)
    })
}
