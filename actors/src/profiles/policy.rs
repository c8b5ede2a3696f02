//! Pure rules of the profiles context: declared attributes (who may write and see each, and
//! what a value may be), merge patches, and the settings limit.

use keyward_config::{AttributeEdit, AttributeKind, AttributeSettings, AttributeView};
use keyward_messages::profiles::SETTINGS_MAX_BYTES;
use keyward_messages::FieldError;
use serde_json::{Map, Value};

/// Who is looking at or changing a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Anonymous,
    SignedIn,
    Owner,
    Admin,
}

impl Audience {
    fn sees(self, view: AttributeView) -> bool {
        match view {
            AttributeView::Public => true,
            AttributeView::Users => self != Audience::Anonymous,
            AttributeView::Owner => matches!(self, Audience::Owner | Audience::Admin),
            AttributeView::Admin => self == Audience::Admin,
        }
    }
}

/// The attributes `who` may see.
pub fn visible_attributes(
    declared: &[AttributeSettings],
    stored: &Map<String, Value>,
    who: Audience,
) -> Map<String, Value> {
    declared
        .iter()
        .filter(|a| who.sees(a.view))
        .filter_map(|a| Some((a.name.clone(), stored.get(&a.name)?.clone())))
        .collect()
}

/// Whether anyone at all may see attribute `name` (its value may go into a public event).
pub fn is_public_attribute(declared: &[AttributeSettings], name: &str) -> bool {
    declared
        .iter()
        .any(|a| a.name == name && a.view == AttributeView::Public)
}

/// The attributes after a patch, and the names of those that changed.
pub type PatchedAttributes = (Map<String, Value>, Vec<String>);

/// Applies a merge patch of attributes written by `who` (Owner or Admin): every member must be
/// declared, writable by `who`, and of its declared type and size; `null` removes it. Returns
/// the new attributes and the names that changed, or every field at fault.
pub fn patch_attributes(
    declared: &[AttributeSettings],
    current: &Map<String, Value>,
    patch: Map<String, Value>,
    who: Audience,
) -> Result<PatchedAttributes, Vec<FieldError>> {
    let mut next = current.clone();
    let mut errors = Vec::new();
    let mut changed = Vec::new();
    for (name, value) in patch {
        let field = format!("attributes.{name}");
        let Some(decl) = declared.iter().find(|a| a.name == name) else {
            let known: Vec<_> = declared.iter().map(|a| a.name.as_str()).collect();
            errors.push(FieldError::new(
                &field,
                "unknown_attribute",
                if known.is_empty() {
                    "no attributes are declared for profiles".to_owned()
                } else {
                    format!("declared attributes are: {}", known.join(", "))
                },
            ));
            continue;
        };
        if decl.edit == AttributeEdit::Admin && who != Audience::Admin {
            errors.push(FieldError::new(
                &field,
                "read_only",
                "only an administrator may change this attribute",
            ));
            continue;
        }
        if value.is_null() {
            if next.remove(&name).is_some() {
                changed.push(name);
            }
            continue;
        }
        if let Err(e) = check_value(decl, &field, &value) {
            errors.push(e);
            continue;
        }
        if next.get(&name) != Some(&value) {
            next.insert(name.clone(), value);
            changed.push(name);
        }
    }
    if errors.is_empty() {
        Ok((next, changed))
    } else {
        Err(errors)
    }
}

fn check_value(decl: &AttributeSettings, field: &str, v: &Value) -> Result<(), FieldError> {
    let max = decl.max_length as usize;
    let text_ok = |s: &str| s.chars().count() <= max && !s.chars().any(char::is_control);
    let ok = match (decl.kind, v) {
        (AttributeKind::String, Value::String(s)) => text_ok(s),
        (AttributeKind::Number, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
        (AttributeKind::Bool, Value::Bool(_)) => true,
        (AttributeKind::StringList, Value::Array(items)) => {
            items.len() <= decl.max_items as usize
                && items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty() && text_ok(s)))
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let expected = match decl.kind {
        AttributeKind::String => format!("a string of at most {max} characters"),
        AttributeKind::Number => "a number".to_owned(),
        AttributeKind::Bool => "true or false".to_owned(),
        AttributeKind::StringList => format!(
            "a list of at most {} non-empty strings of at most {max} characters",
            decl.max_items
        ),
    };
    Err(FieldError::new(
        field,
        "invalid_attribute",
        format!("expected {expected}"),
    ))
}

/// Applies a merge patch (RFC 7396) to a settings object and checks the result's size.
pub fn patch_settings(
    current: &Map<String, Value>,
    patch: Map<String, Value>,
) -> Result<Map<String, Value>, FieldError> {
    let mut doc = Value::Object(current.clone());
    json_patch::merge(&mut doc, &Value::Object(patch));
    let Value::Object(next) = doc else {
        return Ok(Map::new());
    };
    let size = Value::Object(next.clone()).to_string().len();
    if size > SETTINGS_MAX_BYTES {
        return Err(FieldError::new(
            "settings",
            "too_large",
            format!(
                "settings hold at most {} KiB of JSON; this would be {size} bytes",
                SETTINGS_MAX_BYTES / 1024
            ),
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn decl(
        name: &str,
        kind: AttributeKind,
        edit: AttributeEdit,
        view: AttributeView,
    ) -> AttributeSettings {
        AttributeSettings {
            name: name.into(),
            kind,
            max_length: 5,
            max_items: 2,
            edit,
            view,
        }
    }

    fn declared() -> Vec<AttributeSettings> {
        vec![
            decl(
                "skills",
                AttributeKind::StringList,
                AttributeEdit::User,
                AttributeView::Public,
            ),
            decl(
                "rate",
                AttributeKind::Number,
                AttributeEdit::User,
                AttributeView::Users,
            ),
            decl(
                "tier",
                AttributeKind::String,
                AttributeEdit::Admin,
                AttributeView::Admin,
            ),
        ]
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn each_audience_sees_only_its_attributes() {
        let stored = obj(json!({"skills": ["rust"], "rate": 40, "tier": "gold"}));
        let names = |who| {
            let mut k: Vec<_> = visible_attributes(&declared(), &stored, who)
                .keys()
                .cloned()
                .collect();
            k.sort();
            k
        };
        assert_eq!(names(Audience::Anonymous), ["skills"]);
        assert_eq!(names(Audience::SignedIn), ["rate", "skills"]);
        assert_eq!(names(Audience::Owner), ["rate", "skills"]);
        assert_eq!(names(Audience::Admin), ["rate", "skills", "tier"]);
    }

    #[test]
    fn an_attribute_patch_is_checked_against_its_declaration() {
        let current = obj(json!({"rate": 40}));
        let (next, changed) = patch_attributes(
            &declared(),
            &current,
            obj(json!({"skills": ["rust", "sql"], "rate": null})),
            Audience::Owner,
        )
        .unwrap();
        assert_eq!(Value::Object(next), json!({"skills": ["rust", "sql"]}));
        let mut changed = changed;
        changed.sort();
        assert_eq!(changed, ["rate", "skills"]);

        let errors = patch_attributes(
            &declared(),
            &current,
            obj(json!({"skills": ["a", "b", "c"], "rate": "40", "tier": "x", "age": 3})),
            Audience::Owner,
        )
        .unwrap_err();
        let codes: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert!(codes.contains(&("attributes.skills", "invalid_attribute")));
        assert!(codes.contains(&("attributes.rate", "invalid_attribute")));
        assert!(codes.contains(&("attributes.tier", "read_only")));
        assert!(codes.contains(&("attributes.age", "unknown_attribute")));
        assert!(patch_attributes(
            &declared(),
            &current,
            obj(json!({"tier": "gold"})),
            Audience::Admin
        )
        .is_ok());
    }

    #[test]
    fn settings_merge_and_stay_under_the_limit() {
        let current = obj(json!({"theme": "dark", "layout": {"a": 1, "b": 2}}));
        let next = patch_settings(&current, obj(json!({"layout": {"a": null, "c": 3}}))).unwrap();
        assert_eq!(
            Value::Object(next),
            json!({"theme": "dark", "layout": {"b": 2, "c": 3}})
        );
        let big = "x".repeat(SETTINGS_MAX_BYTES);
        assert_eq!(
            patch_settings(&current, obj(json!({"blob": big})))
                .unwrap_err()
                .code,
            "too_large"
        );
    }
}
