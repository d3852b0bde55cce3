//! `$context` of a message: the concrete topic it arrived on and its variables (named wildcards
//! of the subscription, then whatever `setContextVars` adds). Publish topics and labels are
//! rendered from the variables.

use crate::expression::JValue;
use commissioning::topic_pattern::{Template, variable_text};
use serde_json::{Map, Value as Json};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Context {
    pub topic: String,
    pub vars: Map<String, Json>,
}

impl Context {
    pub fn new(topic: impl Into<String>) -> Context {
        Context {
            topic: topic.into(),
            vars: Map::new(),
        }
    }

    pub fn set_var(&mut self, name: &str, value: Json) {
        self.vars.insert(name.to_string(), value);
    }

    /// `{"topic": ..., "vars": {...}}` as an expression sees it.
    pub fn to_jvalue(&self) -> JValue {
        let mut object = Map::with_capacity(2);
        object.insert("topic".into(), Json::String(self.topic.clone()));
        object.insert("vars".into(), Json::Object(self.vars.clone()));
        JValue::from(Json::Object(object))
    }

    /// Renders a publish topic or label; strings go in as they are, other values as JSON.
    pub fn render(&self, template: &Template) -> Result<String, String> {
        template.render(|name, out| match self.vars.get(name) {
            Some(value) => {
                variable_text(value, out);
                true
            }
            None => false,
        })
    }
}
